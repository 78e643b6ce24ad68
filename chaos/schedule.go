// Package chaos is Lode's chaos suite: a real `lode server` and many real
// `lode agent` processes on loopback, each agent behind a fault-injecting
// proxy, running jobs that checkpoint while a seeded injector kills agents,
// stalls them, partitions them from the server and kills the server. The
// tests in this package check, from the outside, that every job still
// finished exactly once with its expected result; the package itself holds
// the parts that have no processes in them: the fault schedule, the proxy
// and the statistics.
package chaos

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// Kind is a kind of fault.
type Kind int

const (
	// Kill SIGKILLs an agent; a replacement starts on the same directory
	// after a while, as an operator's supervisor would start it.
	Kill Kind = iota
	// Stall SIGSTOPs an agent (alone, or with every process under it, as a
	// frozen machine) for a while, then SIGCONTs it.
	Stall
	// Partition cuts an agent off from the server for a while.
	Partition
	// Restart SIGKILLs the server and starts it again, after a while, on
	// the same data directory and address.
	Restart
)

func (k Kind) String() string {
	switch k {
	case Kill:
		return "kill"
	case Stall:
		return "stall"
	case Partition:
		return "partition"
	case Restart:
		return "restart"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Fault is one fault of a schedule.
type Fault struct {
	// At is when it is injected, from the start of the run.
	At   time.Duration
	Kind Kind
	// Agent is the agent slot it hits (not for Restart).
	Agent int
	// For is how long it lasts: the stall, the partition, the server's
	// downtime, or the time before a killed agent's replacement starts.
	For time.Duration
	// Mode is how a Partition cuts the agent off.
	Mode Mode
	// Machine makes a Stall stop every process under the agent too.
	Machine bool
}

func (f Fault) String() string {
	switch f.Kind {
	case Restart:
		return fmt.Sprintf("%v restart server, down %v", f.At.Round(time.Millisecond), f.For.Round(time.Millisecond))
	case Partition:
		return fmt.Sprintf("%v partition agent %d (%v) for %v", f.At.Round(time.Millisecond), f.Agent, f.Mode, f.For.Round(time.Millisecond))
	case Stall:
		what := "agent"
		if f.Machine {
			what = "machine of agent"
		}
		return fmt.Sprintf("%v stall %s %d for %v", f.At.Round(time.Millisecond), what, f.Agent, f.For.Round(time.Millisecond))
	}
	return fmt.Sprintf("%v kill agent %d, replace after %v", f.At.Round(time.Millisecond), f.Agent, f.For.Round(time.Millisecond))
}

// Counts says how many faults of each kind a schedule holds.
type Counts struct {
	Kills, Stalls, Partitions, Restarts int
}

// Total is the number of faults.
func (c Counts) Total() int { return c.Kills + c.Stalls + c.Partitions + c.Restarts }

// Schedule returns the faults for a run, ordered by time: the same seed and
// arguments always give the same schedule. Faults are spread at random over
// [warmup, span), hit agent slots 0..agents-1 at random, and last:
//
//   - stalls 0.3-4 s (some shorter than a lease, which must not lose the
//     node), a third of them freezing the whole machine;
//   - partitions 0.5-5 s, half refusing connections, half blackholing them;
//   - server downtime 0.2-2.5 s;
//   - 0.2-2 s before a killed agent's replacement starts.
func Schedule(seed uint64, c Counts, agents int, warmup, span time.Duration) []Fault {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	kinds := make([]Kind, 0, c.Total())
	for k, n := range map[Kind]int{Kill: c.Kills, Stall: c.Stalls, Partition: c.Partitions, Restart: c.Restarts} {
		for range n {
			kinds = append(kinds, k)
		}
	}
	// Map order is random: sort before shuffling with the seeded source.
	slices.Sort(kinds)
	r.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
	at := make([]time.Duration, len(kinds))
	for i := range at {
		at[i] = warmup + time.Duration(r.Int64N(int64(max(span-warmup, 1))))
	}
	slices.Sort(at)
	between := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(r.Int64N(int64(hi-lo))) }
	faults := make([]Fault, len(kinds))
	for i, k := range kinds {
		f := Fault{At: at[i], Kind: k, Agent: r.IntN(max(agents, 1))}
		switch k {
		case Kill:
			f.For = between(200*time.Millisecond, 2*time.Second)
		case Stall:
			f.For = between(300*time.Millisecond, 4*time.Second)
			f.Machine = r.IntN(3) == 0
		case Partition:
			f.For = between(500*time.Millisecond, 5*time.Second)
			f.Mode = Refuse
			if r.IntN(2) == 0 {
				f.Mode = Blackhole
			}
		case Restart:
			f.Agent = -1
			f.For = between(200*time.Millisecond, 2500*time.Millisecond)
		}
		faults[i] = f
	}
	return faults
}

// Percentile returns the p-th percentile (0-100) of xs by the nearest-rank
// method, or 0 for none.
func Percentile(xs []time.Duration, p float64) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	rank := min(max(int(math.Ceil(p/100*float64(len(s)))), 1), len(s))
	return s[rank-1]
}
