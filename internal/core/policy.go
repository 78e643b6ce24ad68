package core

import "fmt"

// Tier is how far a pool's operator is trusted, lowest first.
type Tier int

const (
	TierCommunity Tier = iota
	TierVerified
	TierCertified
	TierPrivate
)

var tierNames = []string{"community", "verified", "certified", "private"}

func (t Tier) String() string {
	if t < 0 || int(t) >= len(tierNames) {
		return fmt.Sprintf("tier(%d)", int(t))
	}
	return tierNames[t]
}

// ParseTier reads a tier name.
func ParseTier(s string) (Tier, error) {
	for i, n := range tierNames {
		if s == n {
			return Tier(i), nil
		}
	}
	return 0, fmt.Errorf("core: unknown trust tier %q (one of community, verified, certified, private)", s)
}

// Classification is how sensitive a job's data is, lowest first.
type Classification int

const (
	ClassPublic Classification = iota
	ClassInternal
	ClassConfidential
	ClassRestricted
)

var classNames = []string{"public", "internal", "confidential", "restricted"}

func (c Classification) String() string {
	if c < 0 || int(c) >= len(classNames) {
		return fmt.Sprintf("classification(%d)", int(c))
	}
	return classNames[c]
}

// ParseClassification reads a classification name.
func ParseClassification(s string) (Classification, error) {
	for i, n := range classNames {
		if s == n {
			return Classification(i), nil
		}
	}
	return 0, fmt.Errorf("core: unknown classification %q (one of public, internal, confidential, restricted)", s)
}

// Priority orders queued work.
type Priority int

const (
	PriorityLow    Priority = 0
	PriorityNormal Priority = 50
	PriorityHigh   Priority = 100
)

// ParsePriority reads low, normal, high or a number from 0 to 1000.
func ParsePriority(s string) (Priority, error) {
	switch s {
	case "low":
		return PriorityLow, nil
	case "", "normal":
		return PriorityNormal, nil
	case "high":
		return PriorityHigh, nil
	}
	var n int
	if _, err := fmt.Sscanf(s, "%d", &n); err != nil || n < 0 || n > 1000 || fmt.Sprint(n) != s {
		return 0, fmt.Errorf("core: unknown priority %q (low, normal, high or 0-1000)", s)
	}
	return Priority(n), nil
}
