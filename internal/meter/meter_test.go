package meter

import (
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestCharge(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if s, c := Charge(t0, t0.Add(90*time.Minute), 2); s != 5400 || math.Abs(c-3) > 1e-12 {
		t.Errorf("90 minutes at $2/h = %g s, $%g; want 5400 s, $3", s, c)
	}
	if s, c := Charge(time.Time{}, t0, 2); s != 0 || c != 0 {
		t.Errorf("an attempt that never started cost %g s, $%g", s, c)
	}
	if s, c := Charge(t0, t0.Add(-time.Second), 2); s != 0 || c != 0 {
		t.Errorf("an end before the start cost %g s, $%g", s, c)
	}
}

func TestReport(t *testing.T) {
	records := []Record{
		{JobID: "j1", Project: "vision", Pool: "rigs", Seconds: 3600, Cost: 0.3},
		{JobID: "j1", Project: "vision", Pool: "cloud", Seconds: 1800, Cost: 1.6},
		{JobID: "j2", Project: "nlp", Pool: "rigs", Seconds: 7200, Cost: 0.6},
	}
	got := Report(records, ByPool)
	want := []Line{{Key: "cloud", Attempts: 1, Hours: 0.5, Cost: 1.6}, {Key: "rigs", Attempts: 2, Hours: 3, Cost: 0.8999999999999999}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("by pool (-want +got):\n%s", diff)
	}
	if got := Report(records, ByJob); len(got) != 2 || got[0].Key != "j1" || got[0].Attempts != 2 {
		t.Errorf("by job = %+v", got)
	}
	if got := Report(records, ByProject); len(got) != 2 || got[0].Key != "vision" {
		t.Errorf("by project = %+v", got)
	}
}

func TestWouldHaveCost(t *testing.T) {
	// Two hours on an RTX 3090 (0.55 of an A100) is 1.1 A100-hours.
	h, c := WouldHaveCost(2, 0.55, 1, 3)
	if math.Abs(h-1.1) > 1e-12 || math.Abs(c-3.3) > 1e-12 {
		t.Errorf("got %g h, $%g; want 1.1 h, $3.3", h, c)
	}
	if h, c := WouldHaveCost(2, 0, 1, 3); h != 0 || c != 0 {
		t.Error("an unknown throughput priced work")
	}
}
