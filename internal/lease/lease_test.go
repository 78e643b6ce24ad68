package lease

import (
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

func TestRenewAndExpire(t *testing.T) {
	b := NewBook()
	b.Add("a", "h-a", at(0), at(2500))
	b.Add("b", "h-b", at(0), at(2500))
	if known, read := b.Renew("a", at(1000), at(3500), 0, 5*time.Second); !known || !read {
		t.Errorf("first heartbeat: known %v read %v; want a read (a new node has news)", known, read)
	}
	if _, read := b.Renew("a", at(2000), at(4500), 0, 5*time.Second); read {
		t.Error("a heartbeat with no news read the store")
	}
	lost := b.Expire(at(2600))
	if len(lost) != 1 || lost["b"] != at(0) {
		t.Fatalf("expired = %v; want b, last seen at 0", lost)
	}
	if known, _ := b.Renew("b", at(2700), at(5200), 0, time.Second); known {
		t.Error("an expired node renewed its lease")
	}
	if len(b.Expire(at(4400))) != 0 {
		t.Error("a renewed lease expired early")
	}
}

func TestNewsAndSafetyNet(t *testing.T) {
	b := NewBook()
	b.Add("a", "h", at(0), at(10000))
	b.Renew("a", at(100), at(10000), 0, 5*time.Second) // reads: new node
	b.Notify("a")
	if _, read := b.Renew("a", at(200), at(10000), 0, 5*time.Second); !read {
		t.Error("a node with news did not read")
	}
	if _, read := b.Renew("a", at(300), at(10000), 0, 5*time.Second); read {
		t.Error("news was read twice")
	}
	b.Notify()
	if _, read := b.Renew("a", at(400), at(10000), 0, 5*time.Second); !read {
		t.Error("news for every node did not reach a")
	}
	if _, read := b.Renew("a", at(5500), at(10000), 0, 5*time.Second); !read {
		t.Error("the safety-net read did not happen after 5 s")
	}
	if h, ok := b.Credential("a"); !ok || h != "h" {
		t.Errorf("credential = %q, %v", h, ok)
	}
	b.Remove("a")
	if b.Len() != 0 {
		t.Error("a removed node is still in the book")
	}
}

func TestChangedTasksRead(t *testing.T) {
	b := NewBook()
	b.Add("a", "h", at(0), at(10000))
	two := TaskSum([]string{"att-1/0", "att-2/0"})
	if two != TaskSum([]string{"att-2/0", "att-1/0"}) {
		t.Fatal("TaskSum depends on order")
	}
	b.Renew("a", at(100), at(10000), two, time.Minute)
	if _, read := b.Renew("a", at(200), at(10000), two, time.Minute); read {
		t.Error("read although nothing changed")
	}
	if _, read := b.Renew("a", at(300), at(10000), TaskSum([]string{"att-1/0"}), time.Minute); !read {
		t.Error("a task vanished from the node's list and the heartbeat did not read")
	}
}
