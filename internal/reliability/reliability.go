// Package reliability scores pools by how often their nodes are lost, and
// decides when a pool is quarantined and when it is let back in. It is
// pure: observations and the time in, a verdict out.
//
// A pool's loss rate is the number of its nodes declared lost (their lease
// ran out; a node that left cleanly does not count) per node-hour its nodes
// were up, within a sliding window. Its score is exp(-loss rate): the chance
// that a node of the pool survives an hour, 1 for a pool that lost nothing.
package reliability

import (
	"cmp"
	"fmt"
	"math"
	"time"
)

// Node is one node's life in a pool.
type Node struct {
	Registered time.Time
	// End is when the node was lost or left; zero while it is up.
	End  time.Time
	Lost bool
}

// Policy holds the thresholds; zero fields take the defaults.
type Policy struct {
	// Window is how far back observations count (24h).
	Window time.Duration
	// QuarantineBelow is the score under which a pool is quarantined
	// (0.5: a node is more likely lost within the hour than not). A
	// negative value disables quarantine.
	QuarantineBelow float64
	// MinLosses is how many losses it takes before a score can quarantine
	// a pool (2), so that one unlucky node does not.
	MinLosses int
	// MinNodeHours is how much uptime a pool with nodes still up must have
	// shown before its score can quarantine it (1): a young pool's rate is
	// noise. A pool with no node left up is judged at once.
	MinNodeHours float64
	// Probation is how long a quarantined pool must go without a loss,
	// with a node up, before it is let back in (10m).
	Probation time.Duration
}

func (p Policy) withDefaults() Policy {
	p.Window = cmp.Or(p.Window, 24*time.Hour)
	p.QuarantineBelow = cmp.Or(p.QuarantineBelow, 0.5)
	p.MinLosses = cmp.Or(p.MinLosses, 2)
	p.MinNodeHours = cmp.Or(p.MinNodeHours, 1)
	p.Probation = cmp.Or(p.Probation, 10*time.Minute)
	return p
}

// Assessment is a pool's record within the window.
type Assessment struct {
	Losses    int     `json:"losses"`
	NodeHours float64 `json:"node_hours"`
	LossRate  float64 `json:"loss_rate"` // losses per node-hour
	Score     float64 `json:"score"`     // exp(-LossRate)
	Up        int     `json:"up"`        // nodes up now
	// LastLoss is when the pool last lost a node (zero: never, in the window).
	LastLoss time.Time `json:"last_loss,omitzero"`
}

// minNodeHours keeps a pool with almost no history from dividing by almost
// nothing: a loss in its first seconds counts as over a minute of uptime.
const minNodeHours = 1.0 / 60

// Assess scores a pool from its nodes' lives.
func Assess(nodes []Node, now time.Time, p Policy) Assessment {
	p = p.withDefaults()
	from := now.Add(-p.Window)
	var a Assessment
	for _, n := range nodes {
		end := n.End
		if end.IsZero() {
			a.Up++
			end = now
		}
		start := n.Registered
		if start.Before(from) {
			start = from
		}
		if end.After(start) {
			a.NodeHours += end.Sub(start).Hours()
		}
		if n.Lost && !n.End.Before(from) {
			a.Losses++
			if n.End.After(a.LastLoss) {
				a.LastLoss = n.End
			}
		}
	}
	a.LossRate = float64(a.Losses) / math.Max(a.NodeHours, minNodeHours)
	a.Score = math.Exp(-a.LossRate)
	return a
}

// States a Decide returns; they match the store's pool states.
const (
	Active      = "active"
	Quarantined = "quarantined"
)

// Decide says whether a pool in state (since the given time) should move,
// and why. Only active and quarantined pools move: a draining pool is an
// operator's decision.
func Decide(state string, since time.Time, a Assessment, now time.Time, p Policy) (next, reason string) {
	p = p.withDefaults()
	switch {
	case state == Active && p.QuarantineBelow > 0 && a.Losses >= p.MinLosses && a.Score < p.QuarantineBelow &&
		(a.Up == 0 || a.NodeHours >= p.MinNodeHours):
		return Quarantined, fmt.Sprintf("quarantined: lost %d nodes in %.2f node-hours (score %.2f, under %.2f); back after %s without a loss",
			a.Losses, a.NodeHours, a.Score, p.QuarantineBelow, p.Probation)
	case state == Quarantined && a.Up > 0 && now.Sub(since) >= p.Probation && !a.LastLoss.After(since):
		return Active, fmt.Sprintf("re-admitted: no node lost in %s of probation", now.Sub(since).Round(time.Second))
	}
	return state, ""
}
