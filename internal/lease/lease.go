// Package lease keeps the control plane's leases in memory. A heartbeat is
// the hottest request a control plane serves (every agent, every second), so
// it touches no database: it renews a lease here, and the control loop asks
// this book which leases have run out. The book also remembers which nodes
// have news waiting (a task to start or stop), so a heartbeat reads the
// store only when there is something to read.
//
// The book is rebuilt at start from the store's live nodes, each given a
// fresh lease, so a restart loses nothing a heartbeat cannot restore.
package lease

import (
	"hash/fnv"
	"sync"
	"time"
)

// Book is the set of live nodes' leases. It is safe for concurrent use.
type Book struct {
	mu    sync.Mutex
	nodes map[string]*entry
}

type entry struct {
	credential string // the hash of the node's credential
	last       time.Time
	expires    time.Time
	// news says the node has something waiting in the store; lastRead is
	// when its heartbeat last read the store.
	news     bool
	lastRead time.Time
	// tasks summarizes the tasks the node said it runs, last time.
	tasks uint64
}

// NewBook returns an empty book.
func NewBook() *Book { return &Book{nodes: map[string]*entry{}} }

// Add enters a live node with a lease until expires; it has news, so its
// first heartbeat reads the store.
func (b *Book) Add(id, credentialHash string, now, expires time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.nodes[id] = &entry{credential: credentialHash, last: now, expires: expires, news: true}
}

// Credential returns the credential hash of a live node.
func (b *Book) Credential(id string) (string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.nodes[id]
	if !ok {
		return "", false
	}
	return e.credential, true
}

// Renew extends a live node's lease and says whether its heartbeat should
// read the store: when it has news, when the tasks it says it runs changed
// (tasks summarizes them, e.g. with TaskSum), or when it last read longer
// ago than every (a safety net). It reports false for known when the node
// is not in the book (its lease ran out, or it left).
func (b *Book) Renew(id string, now, expires time.Time, tasks uint64, every time.Duration) (known, read bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.nodes[id]
	if !ok {
		return false, false
	}
	e.last, e.expires = now, expires
	if e.news || e.tasks != tasks || now.Sub(e.lastRead) >= every {
		e.news, e.lastRead, e.tasks = false, now, tasks
		return true, true
	}
	return true, false
}

// TaskSum summarizes a set of task names, whatever their order.
func TaskSum(names []string) uint64 {
	var sum uint64
	for _, n := range names {
		h := fnv.New64a()
		h.Write([]byte(n))
		sum += h.Sum64()
	}
	return sum
}

// Last returns when a live node last renewed its lease.
func (b *Book) Last(id string) (time.Time, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.nodes[id]
	if !ok {
		return time.Time{}, false
	}
	return e.last, true
}

// Expire removes and returns the nodes whose leases ended before now, with
// when each last renewed.
func (b *Book) Expire(now time.Time) map[string]time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out map[string]time.Time
	for id, e := range b.nodes {
		if e.expires.Before(now) {
			if out == nil {
				out = map[string]time.Time{}
			}
			out[id] = e.last
			delete(b.nodes, id)
		}
	}
	return out
}

// Remove drops a node that left.
func (b *Book) Remove(id string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.nodes, id)
}

// Notify marks nodes as having news; with no IDs, every node.
func (b *Book) Notify(ids ...string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(ids) == 0 {
		for _, e := range b.nodes {
			e.news = true
		}
		return
	}
	for _, id := range ids {
		if e, ok := b.nodes[id]; ok {
			e.news = true
		}
	}
}

// Len returns how many live nodes the book holds.
func (b *Book) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.nodes)
}
