package chaos

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// Mode is how a Proxy treats traffic.
type Mode int

const (
	// Open forwards everything.
	Open Mode = iota
	// Refuse resets every open connection and every new one: the agent
	// sees its requests fail at once, as when a router rejects them.
	Refuse
	// Blackhole forwards nothing, and says nothing: connections stay open
	// and bytes wait, as when packets are dropped on the way. When the
	// partition heals, what waited is delivered (TCP retransmits it), so
	// requests sent during the partition arrive late.
	Blackhole
)

func (m Mode) String() string {
	switch m {
	case Open:
		return "open"
	case Refuse:
		return "refuse"
	case Blackhole:
		return "blackhole"
	}
	return "unknown"
}

// Proxy is a TCP proxy on loopback that stands between one agent and the
// server, and can partition them. It dials the server afresh for every
// connection, so it keeps working across server restarts on the same
// address. All methods are safe for concurrent use.
type Proxy struct {
	ln       net.Listener
	upstream string

	mu     sync.Mutex
	mode   Mode
	healed chan struct{} // closed when the mode goes back to Open
	conns  map[*pair]struct{}
	closed bool
	wg     sync.WaitGroup
}

// pair is a client connection and its upstream connection.
type pair struct {
	client, server net.Conn
	once           sync.Once
}

// close closes both ends; reset makes the client see a reset rather than an
// orderly end.
func (p *pair) close(reset bool) {
	p.once.Do(func() {
		if reset {
			if tc, ok := p.client.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
		}
		p.client.Close()
		if p.server != nil {
			p.server.Close()
		}
	})
}

// NewProxy listens on a free loopback port and forwards to upstream
// (host:port).
func NewProxy(upstream string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, upstream: upstream, conns: map[*pair]struct{}{}, healed: make(chan struct{})}
	close(p.healed)
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is where agents connect.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Mode returns the current mode.
func (p *Proxy) Mode() Mode {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode
}

// Set changes the mode. Refuse resets every open connection at once;
// Blackhole stops forwarding until the mode is Open again.
func (p *Proxy) Set(m Mode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || m == p.mode {
		return
	}
	if p.mode == Open {
		p.healed = make(chan struct{})
	}
	p.mode = m
	switch m {
	case Open:
		close(p.healed)
	case Refuse:
		for c := range p.conns {
			c.close(true)
			delete(p.conns, c)
		}
	}
}

// Close stops the proxy and closes every connection through it.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	err := p.ln.Close()
	for c := range p.conns {
		c.close(false)
	}
	if p.mode != Open {
		close(p.healed)
	}
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

// gate waits until traffic may flow and reports whether the connection
// may go on: false when it was refused or the proxy closed.
func (p *Proxy) gate(c *pair) bool {
	for {
		p.mu.Lock()
		mode, healed, closed := p.mode, p.healed, p.closed
		_, live := p.conns[c]
		p.mu.Unlock()
		if closed || !live {
			return false
		}
		switch mode {
		case Open:
			return true
		case Refuse:
			return false
		}
		<-healed
	}
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		conn, err := p.ln.Accept()
		if err != nil {
			return
		}
		c := &pair{client: conn}
		p.mu.Lock()
		if p.closed || p.mode == Refuse {
			p.mu.Unlock()
			c.close(true)
			continue
		}
		p.conns[c] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.serve(c)
	}
}

// serve connects a client to the server once traffic may flow, then copies
// both ways.
func (p *Proxy) serve(c *pair) {
	defer p.wg.Done()
	defer p.forget(c)
	if !p.gate(c) {
		c.close(true)
		return
	}
	up, err := net.DialTimeout("tcp", p.upstream, 2*time.Second)
	if err != nil {
		c.close(true) // the server is down: the agent sees a reset
		return
	}
	p.mu.Lock()
	if _, live := p.conns[c]; !live || p.closed {
		p.mu.Unlock()
		up.Close()
		c.close(true)
		return
	}
	c.server = up
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { p.copy(c, up, c.client); done <- struct{}{} }()
	go func() { p.copy(c, c.client, up); done <- struct{}{} }()
	<-done
	<-done
	c.close(false)
}

// copy forwards src to dst, each piece only when the gate is open.
func (p *Proxy) copy(c *pair, dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.gate(c) {
				c.close(true)
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				c.close(true)
				return
			}
		}
		if err != nil {
			if tc, ok := dst.(*net.TCPConn); ok && errors.Is(err, io.EOF) {
				// Pass the end on; the other way may still carry data.
				_ = tc.CloseWrite()
				return
			}
			c.close(true)
			return
		}
	}
}

func (p *Proxy) forget(c *pair) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}
