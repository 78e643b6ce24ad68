package kubernetes

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"lode.dev/lode/internal/client"
	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/store"
	"lode.dev/lode/internal/wire"
)

// vnode is a Kubernetes node as a Lode node: the virtual agent that keeps
// its lease. Its heartbeats run on a goroutine of their own; everything
// else about it belongs to the driver's loop.
type vnode struct {
	name, model string
	id          string
	c           *client.Client
	joined      *wire.Joined
	stop        context.CancelFunc
	// releasedAt is when the driver stopped the node's heartbeats.
	releasedAt time.Time
	// seen is the newest generation the server has taken in, as of the
	// loop's last look (acked).
	seen uint64

	// The heartbeats and the loop share what is below. Heartbeats never
	// wait for the loop: a lease must not run out while the loop waits
	// on a slow Kubernetes API.
	mu    sync.Mutex
	tasks []wire.TaskRef
	offer Offer  // what its heartbeats say it offers
	gen   uint64 // bumped whenever tasks or offer change
	// acked is the newest generation a heartbeat carried and the server
	// answered.
	acked uint64
	// inbox holds answers that asked for something, for the loop.
	inbox  []*wire.HeartbeatReply
	isGone bool
}

func newVnode(name, model string, joined *wire.Joined, c *client.Client, o Offer) *vnode {
	return &vnode{name: name, model: model, id: joined.NodeID, c: c, joined: joined, offer: o, stop: func() {}}
}

// setOffer sets what the node's heartbeats offer, and returns the offer
// before and the generation of the heartbeat that carries the new one.
func (v *vnode) setOffer(o Offer) (Offer, uint64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	old := v.offer
	if o != old {
		v.offer = o
		v.gen++
	}
	return old, v.gen
}

// setTasks sets what the node's heartbeats say it runs, and returns the
// list's generation.
func (v *vnode) setTasks(t []wire.TaskRef) uint64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !slices.Equal(t, v.tasks) {
		v.tasks = t
		v.gen++
	}
	return v.gen
}

// heartbeat is the node's next heartbeat, and the generation of its task
// list.
func (v *vnode) heartbeat() (*wire.Heartbeat, uint64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return &wire.Heartbeat{Tasks: append([]wire.TaskRef(nil), v.tasks...), Capacity: v.offer.capacity(v.model)}, v.gen
}

// take hands the loop the answers that asked for something, and the
// newest generation the server has taken in.
func (v *vnode) take() ([]*wire.HeartbeatReply, uint64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	in := v.inbox
	v.inbox = nil
	return in, v.acked
}

func (v *vnode) gone() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.isGone
}

func (v *vnode) leaseTTL() time.Duration {
	return cmp.Or(time.Duration(v.joined.LeaseTTLMS)*time.Millisecond, 10*time.Second)
}

// beat keeps the node's lease until ctx ends or the server says the node
// is gone, leaving every answer for the driver's loop and waking it.
// Heartbeats travel on one stream, opened again whenever it breaks.
func (v *vnode) beat(ctx context.Context, wake func(), log *slog.Logger) {
	log = log.With(slog.String("node", v.name), slog.String("lode_node", v.id))
	interval := cmp.Or(time.Duration(v.joined.HeartbeatIntervalMS)*time.Millisecond, time.Second)
	// As an agent bounds a round trip: a stream lost in a partition is
	// replaced well before the lease it renews runs out twice over.
	timeout := max(v.leaseTTL(), 2*time.Second)
	var open *client.Beats
	defer func() {
		if open != nil {
			open.Close()
		}
	}()
	t := time.NewTimer(0)
	defer t.Stop()
	var unreachable error
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		t.Reset(interval)
		if open == nil {
			s, err := v.c.OpenBeats(ctx, timeout)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				if v.refused(err, log) {
					return
				}
				if unreachable == nil {
					log.Warn("cannot open a heartbeat stream; retrying", slog.Any("err", err))
				}
				unreachable = err
				continue
			}
			open = s
		}
		hb, gen := v.heartbeat()
		r, err := open.Beat(hb)
		if err != nil {
			open = nil // Beat closed it
			if ctx.Err() != nil || v.refused(err, log) {
				return
			}
			if unreachable == nil {
				log.Warn("heartbeat failed; retrying", slog.Any("err", err))
			}
			unreachable = err
			continue
		}
		if unreachable != nil {
			log.Info("heartbeats answered again")
			unreachable = nil
		}
		v.mu.Lock()
		v.acked = max(v.acked, gen)
		news := len(r.Start) > 0 || len(r.Stop) > 0
		if news {
			v.inbox = append(v.inbox, r)
		}
		v.mu.Unlock()
		if news {
			wake()
		}
	}
}

// refused reports whether err says the server no longer knows the node,
// and if so marks it gone.
func (v *vnode) refused(err error, log *slog.Logger) bool {
	if !errors.Is(err, store.ErrNodeGone) && !client.IsUnauthorized(err) {
		return false
	}
	log.Warn("the server no longer knows this node (its lease ran out, or it left)", slog.Any("err", err))
	v.mu.Lock()
	v.isGone = true
	v.mu.Unlock()
	return true
}

// attempt is an attempt the driver holds: assigned to the pool and not
// yet done with. It belongs to the driver's loop.
type attempt struct {
	id       string
	as       wire.Assignment // the first rank's: job, fencing token, every rank's node
	ns, name string
	nodes    []string         // the Lode node of each rank
	told     []core.TaskState // what the server last heard of each rank from the driver
	listed   []bool           // whether the rank's node's heartbeats list it
	// dropGen is, for a running rank taken off its node's list because it
	// was lost, the list's generation without it: once a heartbeat of
	// that generation is answered, the server holds the rank lost.
	dropGen []uint64
	// stuckGen is, for a rank that did not start in time, the generation
	// of its node's heartbeat that offers nothing: once the server has
	// it, the rank is reported lost, and its job is not placed on the
	// same node again at once.
	stuckGen []uint64
	since    time.Time // when the driver took it on; pending time counts from here
	created  bool      // the Job, Service and Secret exist

	stopping bool
	why      string
	deleted  bool // the Job's deletion was asked for
	// quiet: nothing is reported when its Job is gone; the server ended
	// the attempt, or its ranks reported their ends.
	quiet bool
	// warned holds the last problem logged, to log each once.
	warned string
}

func newAttempt(as wire.Assignment, ns string) *attempt {
	n := max(len(as.Ranks), 1)
	a := &attempt{
		id: as.Task.AttemptID, as: as, ns: ns, name: ObjectName(as.Task.AttemptID),
		nodes: as.Ranks, told: make([]core.TaskState, n), listed: make([]bool, n), dropGen: make([]uint64, n), stuckGen: make([]uint64, n), since: time.Now(),
	}
	if len(a.nodes) == 0 {
		a.nodes = []string{as.Task.NodeID}
	}
	for r := range a.told {
		// Every rank is listed on its node from the start: the driver
		// runs them all from this one assignment, so no other node
		// needs to be told to start one.
		a.told[r], a.listed[r] = core.TaskAssigned, true
	}
	return a
}

func (a *attempt) stop(why string) {
	if !a.stopping {
		a.stopping, a.why = true, why
	}
}

// dropping reports whether a running rank was taken off its node's list
// and the server has not yet been seen to take that in.
func (a *attempt) dropping(r int) bool {
	return a.told[r] == core.TaskRunning && !a.listed[r]
}

// over reports whether every rank has ended as far as the server knows.
func (a *attempt) over() bool {
	for _, s := range a.told {
		if !s.Terminal() {
			return false
		}
	}
	return true
}

func (a *attempt) warn(log *slog.Logger, what string, err error) {
	msg := fmt.Sprintf("%s: %v", what, err)
	if msg != a.warned {
		a.warned = msg
		log.Warn(what, slog.Any("err", err))
	}
}
