package reliability

import (
	"math"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func h(x float64) time.Time { return t0.Add(time.Duration(x * float64(time.Hour))) }

func TestAssess(t *testing.T) {
	nodes := []Node{
		{Registered: h(0)},                            // up 10 h
		{Registered: h(0), End: h(5), Lost: true},     // lost after 5 h
		{Registered: h(2), End: h(4)},                 // left cleanly: not a loss
		{Registered: h(-48), End: h(-30), Lost: true}, // outside the window
	}
	a := Assess(nodes, h(10), Policy{})
	if a.Losses != 1 || a.Up != 1 || math.Abs(a.NodeHours-17) > 1e-9 {
		t.Fatalf("assessment = %+v; want 1 loss, 1 up, 17 node-hours", a)
	}
	if math.Abs(a.Score-math.Exp(-1.0/17)) > 1e-12 || a.LastLoss != h(5) {
		t.Errorf("score %g last loss %v", a.Score, a.LastLoss)
	}
	if none := Assess(nil, h(1), Policy{}); none.Score != 1 || none.LossRate != 0 {
		t.Errorf("an empty pool scores %+v; want 1", none)
	}
}

func TestDecide(t *testing.T) {
	allKilled := []Node{
		{Registered: h(0), End: h(0.01), Lost: true},
		{Registered: h(0), End: h(0.02), Lost: true},
	}
	a := Assess(allKilled, h(0.03), Policy{})
	next, reason := Decide(Active, h(0), a, h(0.03), Policy{})
	if next != Quarantined || !strings.Contains(reason, "lost 2 nodes") {
		t.Fatalf("a pool whose agents were all killed: %s (%s); want quarantined with the reason", next, reason)
	}
	if next, _ := Decide(Active, h(0), Assess(allKilled[:1], h(0.03), Policy{}), h(0.03), Policy{}); next != Active {
		t.Error("one loss quarantined a pool; MinLosses is 2")
	}
	young := append([]Node{{Registered: h(0)}}, allKilled...) // one node still up
	if next, _ := Decide(Active, h(0), Assess(young, h(0.03), Policy{}), h(0.03), Policy{}); next != Active {
		t.Error("a young pool with a node up was quarantined on two early losses")
	}
	flaky := []Node{{Registered: h(0)}, {Registered: h(0), End: h(0.2), Lost: true}, {Registered: h(0), End: h(0.2), Lost: true},
		{Registered: h(0), End: h(0.2), Lost: true}} // 3 losses in 2.1 node-hours: score 0.24
	if next, _ := Decide(Active, h(0), Assess(flaky, h(1.5), Policy{}), h(1.5), Policy{}); next != Quarantined {
		t.Error("a pool with enough history and a bad score was not quarantined")
	}
	if next, _ := Decide(Active, h(0), a, h(0.03), Policy{QuarantineBelow: -1}); next != Active {
		t.Error("quarantine was disabled, yet the pool was quarantined")
	}
	if next, _ := Decide("draining", h(0), a, h(0.03), Policy{}); next != "draining" {
		t.Error("a draining pool changed state")
	}

	// Probation: a node up, and no loss since the quarantine began.
	since := h(0.03)
	back := append(allKilled, Node{Registered: h(0.05)})
	early := Assess(back, h(0.1), Policy{})
	if next, _ := Decide(Quarantined, since, early, h(0.1), Policy{}); next != Quarantined {
		t.Error("re-admitted before the probation ended")
	}
	later := h(0.03 + 11.0/60)
	if next, reason := Decide(Quarantined, since, Assess(back, later, Policy{}), later, Policy{}); next != Active || !strings.Contains(reason, "probation") {
		t.Errorf("after probation: %s (%s); want active", next, reason)
	}
	relapse := append(back, Node{Registered: h(0.06), End: h(0.1), Lost: true})
	if next, _ := Decide(Quarantined, since, Assess(relapse, later, Policy{}), later, Policy{}); next != Quarantined {
		t.Error("re-admitted a pool that lost a node during its probation")
	}
	if next, _ := Decide(Quarantined, since, Assess(allKilled, later, Policy{}), later, Policy{}); next != Quarantined {
		t.Error("re-admitted a pool with no node up")
	}
}
