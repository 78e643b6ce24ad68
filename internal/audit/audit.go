// Package audit owns Lode's tamper-evident audit log: a chain of entries in
// which every entry commits to the hash of the one before it, sealed from
// time to time by a checkpoint that signs the chain's head with the control
// plane's ed25519 key. Verify walks a log and names the first entry that was
// edited, deleted, inserted or moved, and notices a tail cut off after a
// checkpoint. The package is pure; the store keeps the entries.
package audit

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Kinds of event.
const (
	JobSubmitted        = "job.submitted"
	JobPlaced           = "job.placed"
	JobCancelled        = "job.cancelled"
	NodeJoined          = "node.joined"
	NodeJoinRefused     = "node.join_refused"
	NodeLeft            = "node.left"
	NodeLost            = "node.lost"
	NodeDrained         = "node.drained"
	KeyGranted          = "key.granted"
	GrantRefused        = "grant.refused"
	ArtifactDownloaded  = "artifact.downloaded"
	DatasetCommitted    = "dataset.committed"
	CheckpointCommitted = "checkpoint.committed"
	OutputsCommitted    = "outputs.committed"
	PoolChanged         = "pool.changed"
	ProjectChanged      = "project.changed"
	WriteFenced         = "write.fenced"
	UserChanged         = "user.changed"
	MemberChanged       = "member.changed"
	TokenCreated        = "token.created"
	TokenRevoked        = "token.revoked"
	JoinTokenCreated    = "join_token.created"
	JoinTokenRevoked    = "join_token.revoked"
	AccessDenied        = "access.denied"
	NodeRevoked         = "node.revoked"
	NodeCertified       = "node.certified"
	NodeRefused         = "node.refused"
	UploadRejected      = "upload.rejected"
)

// Event is something security-relevant that happened.
type Event struct {
	Time time.Time `json:"time"`
	Kind string    `json:"kind"`
	// Actor is who did it: "user", "node:ID", "control".
	Actor string `json:"actor"`
	// Subject is what it was done to: a job, node, pool, object.
	Subject string            `json:"subject"`
	Project string            `json:"project,omitempty"`
	Detail  map[string]string `json:"detail,omitempty"`
}

// Entry is one link of the chain.
type Entry struct {
	Seq int64 `json:"seq"`
	Event
	// Prev is the hash of the entry before (empty for the first); Hash is
	// this entry's, over its sequence number, Prev and the event.
	Prev string `json:"prev"`
	Hash string `json:"hash"`
}

// Hash computes an entry's hash: SHA-256 over a canonical JSON encoding of
// its sequence number, its predecessor's hash and its event (encoding/json
// sorts map keys, so the encoding is canonical).
func Hash(seq int64, prev string, ev Event) string {
	ev.Time = ev.Time.UTC().Truncate(time.Millisecond)
	b, err := json.Marshal(struct {
		Seq   int64  `json:"seq"`
		Prev  string `json:"prev"`
		Event Event  `json:"event"`
	}{seq, prev, ev})
	if err != nil {
		panic("audit: an event that cannot be encoded: " + err.Error()) // strings and a time only
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Next links an event after prev (nil for the first entry).
func Next(prev *Entry, ev Event) Entry {
	e := Entry{Seq: 1, Event: ev}
	e.Time = ev.Time.UTC().Truncate(time.Millisecond)
	if prev != nil {
		e.Seq, e.Prev = prev.Seq+1, prev.Hash
	}
	e.Hash = Hash(e.Seq, e.Prev, e.Event)
	return e
}

// Checkpoint seals the chain up to an entry: a signature over its
// sequence number and hash.
type Checkpoint struct {
	Seq       int64     `json:"seq"`
	Head      string    `json:"head"`
	Time      time.Time `json:"time"`
	Signature []byte    `json:"signature"`
}

func checkpointMessage(seq int64, head string) []byte {
	return []byte(fmt.Sprintf("lode audit checkpoint\x00%d\x00%s", seq, head))
}

// Seal signs the chain's head.
func Seal(key ed25519.PrivateKey, head Entry, now time.Time) Checkpoint {
	return Checkpoint{Seq: head.Seq, Head: head.Hash, Time: now.UTC().Truncate(time.Millisecond),
		Signature: ed25519.Sign(key, checkpointMessage(head.Seq, head.Hash))}
}

// Problem is the first thing wrong with a log.
type Problem struct {
	// Seq is the sequence number of the first bad entry (or, for a bad
	// checkpoint, the entry it seals).
	Seq  int64
	What string
}

func (p *Problem) Error() string { return fmt.Sprintf("audit log entry %d: %s", p.Seq, p.What) }

// ErrTampered wraps every Problem, for errors.Is.
var ErrTampered = errors.New("audit: log tampered with")

func (p *Problem) Unwrap() error { return ErrTampered }

// Verify checks a whole log, oldest entry first, against its checkpoints
// and the control plane's public key. It returns nil for an intact log, or
// the first problem: an entry whose hash does not match its contents (it
// was edited), whose sequence number skips (one was deleted) or repeats or
// goes back (one was inserted or moved), whose link to its predecessor is
// broken; a checkpoint whose signature fails; or a checkpoint sealing an
// entry the log no longer holds, or holds with another hash (the tail was
// cut or rewritten).
func Verify(entries []Entry, checkpoints []Checkpoint, pub ed25519.PublicKey) *Problem {
	present := make(map[int64]bool, len(entries))
	for _, e := range entries {
		present[e.Seq] = true
	}
	byseq := make(map[int64]string, len(entries))
	prev := ""
	for i, e := range entries {
		want := int64(i + 1)
		switch {
		case e.Seq > want && present[want]:
			return &Problem{Seq: want, What: fmt.Sprintf("out of place: entry %d stands where it should (the log was reordered)", e.Seq)}
		case e.Seq > want:
			return &Problem{Seq: want, What: fmt.Sprintf("missing: the log jumps from entry %d to %d (entries were deleted)", want-1, e.Seq)}
		case e.Seq < want:
			return &Problem{Seq: e.Seq, What: fmt.Sprintf("out of place at position %d (an entry was inserted or the log reordered)", want)}
		case e.Prev != prev:
			return &Problem{Seq: e.Seq, What: "does not follow its predecessor (an entry before it was changed, removed or moved)"}
		case Hash(e.Seq, e.Prev, e.Event) != e.Hash:
			return &Problem{Seq: e.Seq, What: "its contents do not match its hash (it was edited)"}
		}
		byseq[e.Seq] = e.Hash
		prev = e.Hash
	}
	for _, c := range checkpoints {
		if !ed25519.Verify(pub, checkpointMessage(c.Seq, c.Head), c.Signature) {
			return &Problem{Seq: c.Seq, What: "the checkpoint sealing it has a bad signature"}
		}
		h, ok := byseq[c.Seq]
		switch {
		case !ok:
			return &Problem{Seq: c.Seq, What: fmt.Sprintf("sealed by a checkpoint but missing: the log was cut after entry %d", len(entries))}
		case h != c.Head:
			return &Problem{Seq: c.Seq, What: "does not match the hash its checkpoint sealed (the log was rewritten)"}
		}
	}
	return nil
}
