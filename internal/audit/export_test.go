package audit

import (
	"bytes"
	"crypto/ed25519"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestExportRoundTrip(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	log := chain(t, 3)
	cps := []Checkpoint{Seal(priv, log[2], time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))}
	var buf bytes.Buffer
	if err := WriteExport(&buf, log, cps); err != nil {
		t.Fatal(err)
	}
	gotLog, gotCps, err := ReadExport(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(log, gotLog); diff != "" {
		t.Errorf("entries (-want +got):\n%s", diff)
	}
	if p := Verify(gotLog, gotCps, pub); p != nil {
		t.Errorf("a round-tripped log does not verify: %v", p)
	}
	for _, bad := range []string{"{nope\n", `{"entry":{"seq":1},"checkpoint":{"seq":1}}` + "\n", "{}\n"} {
		if _, _, err := ReadExport(strings.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "line 1") {
			t.Errorf("ReadExport(%q) = %v; want an error naming line 1", bad, err)
		}
	}
}

func FuzzReadExport(f *testing.F) {
	var buf bytes.Buffer
	_, priv, _ := ed25519.GenerateKey(nil)
	log := []Entry{Next(nil, Event{Kind: JobSubmitted, Subject: "job-1"})}
	WriteExport(&buf, log, []Checkpoint{Seal(priv, log[0], time.Unix(0, 0))})
	f.Add(buf.String())
	f.Add("{\"entry\":null}\n")
	f.Fuzz(func(t *testing.T, s string) {
		entries, cps, err := ReadExport(strings.NewReader(s))
		if err != nil {
			return
		}
		pub, _, _ := ed25519.GenerateKey(nil)
		_ = Verify(entries, cps, pub) // must not panic on any input
	})
}
