package audit

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func chain(t *testing.T, n int) []Entry {
	t.Helper()
	var out []Entry
	var prev *Entry
	for i := range n {
		e := Next(prev, Event{Time: time.Date(2026, 1, 1, 0, 0, i, 0, time.UTC), Kind: JobSubmitted, Actor: "user",
			Subject: fmt.Sprintf("job-%d", i), Detail: map[string]string{"name": "resnet"}})
		out = append(out, e)
		prev = &out[len(out)-1]
	}
	return out
}

func TestVerify(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	log := chain(t, 6)
	cps := []Checkpoint{Seal(priv, log[2], time.Now()), Seal(priv, log[5], time.Now())}
	if p := Verify(log, cps, pub); p != nil {
		t.Fatalf("an intact log: %v", p)
	}
	_, otherKey, _ := ed25519.GenerateKey(nil)
	tests := []struct {
		name   string
		mutate func(l []Entry, c []Checkpoint) ([]Entry, []Checkpoint)
		seq    int64
		what   string
	}{
		{"edited", func(l []Entry, c []Checkpoint) ([]Entry, []Checkpoint) {
			l[3].Subject = "job-other"
			return l, c
		}, 4, "edited"},
		{"edited and rehashed", func(l []Entry, c []Checkpoint) ([]Entry, []Checkpoint) {
			l[3].Subject = "job-other"
			l[3].Hash = Hash(l[3].Seq, l[3].Prev, l[3].Event)
			return l, c
		}, 5, "does not follow"},
		{"deleted", func(l []Entry, c []Checkpoint) ([]Entry, []Checkpoint) {
			return slices.Delete(l, 2, 3), c
		}, 3, "deleted"},
		{"inserted", func(l []Entry, c []Checkpoint) ([]Entry, []Checkpoint) {
			return slices.Insert(l, 2, l[1]), c
		}, 2, "inserted"},
		{"reordered", func(l []Entry, c []Checkpoint) ([]Entry, []Checkpoint) {
			l[1], l[2] = l[2], l[1]
			return l, c
		}, 2, "out of place"},
		{"renumbered to hide a deletion", func(l []Entry, c []Checkpoint) ([]Entry, []Checkpoint) {
			l = slices.Delete(l, 2, 3)
			for i := 2; i < len(l); i++ {
				l[i].Seq--
			}
			return l, c
		}, 3, "does not follow"},
		{"tail cut", func(l []Entry, c []Checkpoint) ([]Entry, []Checkpoint) {
			return l[:4], c
		}, 6, "cut after entry 4"},
		{"tail rewritten from scratch", func(l []Entry, c []Checkpoint) ([]Entry, []Checkpoint) {
			l = l[:5]
			e := Next(&l[4], Event{Time: time.Now(), Kind: JobCancelled, Actor: "user", Subject: "job-x"})
			return append(l, e), c
		}, 6, "rewritten"},
		{"forged checkpoint", func(l []Entry, c []Checkpoint) ([]Entry, []Checkpoint) {
			return l, append(c, Seal(otherKey, l[4], time.Now()))
		}, 5, "bad signature"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, c := tt.mutate(slices.Clone(log), slices.Clone(cps))
			p := Verify(l, c, pub)
			if p == nil {
				t.Fatal("tampering went unnoticed")
			}
			if p.Seq != tt.seq || !strings.Contains(p.Error(), tt.what) || !errors.Is(p, ErrTampered) {
				t.Errorf("problem = %v (seq %d); want entry %d, %q", p, p.Seq, tt.seq, tt.what)
			}
		})
	}
}

func TestHashIsCanonical(t *testing.T) {
	ev := Event{Time: time.Date(2026, 1, 1, 0, 0, 0, 123456789, time.FixedZone("x", 3600)), Kind: KeyGranted,
		Detail: map[string]string{"b": "2", "a": "1"}}
	same := ev
	same.Time = ev.Time.UTC().Truncate(time.Millisecond)
	same.Detail = map[string]string{"a": "1", "b": "2"}
	if Hash(1, "", ev) != Hash(1, "", same) {
		t.Error("the same event hashes differently by time zone, precision or map order")
	}
}
