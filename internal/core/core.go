// Package core holds the leaf types that every other package of Lode shares:
// identifiers, lifecycle states, resources, trust tiers and data classifications.
// It imports nothing of Lode's own.
package core

import (
	"crypto/rand"
	"encoding/base32"
	"strings"
)

// NewID returns a random identifier with a short prefix that says what it names,
// for example "job-4k2m9x7q3tplw5rn".
func NewID(prefix string) string {
	var b [10]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("core: crypto/rand failed: " + err.Error()) // the runtime guarantees it does not
	}
	return prefix + "-" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// NewSecret returns 32 random bytes as text, for tokens and fencing secrets.
func NewSecret() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("core: crypto/rand failed: " + err.Error())
	}
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}
