// Package server assembles the control plane: the store, the key ring, the
// blob store, the API, the control loop and, unless disabled, the local
// pool's agent, which joins over loopback exactly as a remote agent would.
// `lode server` and `lode run --local` both run it.
package server

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"lode.dev/lode/internal/agent"
	"lode.dev/lode/internal/api"
	"lode.dev/lode/internal/control"
	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/data"
	"lode.dev/lode/internal/lease"
	"lode.dev/lode/internal/pki"
	"lode.dev/lode/internal/poolfile"
	"lode.dev/lode/internal/reliability"
	"lode.dev/lode/internal/store"
	"lode.dev/lode/internal/store/sqlite"
)

// Pool names the server creates at first start.
const (
	LocalPool   = "local"
	DefaultPool = "default"
)

// Config configures a control plane.
type Config struct {
	// DataDir holds the database, the key file, the blob store (by
	// default) and the local agent's task directories.
	DataDir string
	// Listen is the address to serve on, 127.0.0.1:7070 by default; port 0
	// picks a free one.
	Listen string
	// PublicURL is the address agents dial; by default https://LISTEN.
	PublicURL string
	// TLSCert and TLSKey are the server's own certificate and key files;
	// by default the control plane's CA (DATADIR/ca.crt) signs one for the
	// listen address, localhost, the host name and PublicURL's host. Nodes'
	// client certificates come from that CA either way.
	TLSCert, TLSKey string
	// BlobURL is any gocloud.dev/blob URL; file://DATADIR/blobs by default.
	BlobURL string
	// KeeperURL is any gocloud.dev/secrets URL for the key-encryption key;
	// by default a local key file DATADIR/kek.key, created 0600.
	KeeperURL string
	// PoolsFile is a declarative pools file (internal/poolfile) applied at
	// start: its pools are created or updated to match.
	PoolsFile string
	// NoLocalPool disables the in-process agent for this machine.
	NoLocalPool bool
	// LocalGPUs declares the local node's GPUs (nil: nvidia-smi).
	LocalGPUs []core.GPU
	// Reliability sets when pools are quarantined and let back in.
	Reliability reliability.Policy
	// AuditSealEvery is how often the audit log's head is signed (a minute
	// by default; once more at shutdown).
	AuditSealEvery time.Duration
	// HeartbeatInterval and LeaseTTL govern failure detection.
	HeartbeatInterval time.Duration
	LeaseTTL          time.Duration
	// Guard is the lode binary, for running tasks under exec-guard.
	Guard   string
	Version string
	Logger  *slog.Logger
	// Out receives the messages meant for the operator (join command).
	Out io.Writer
}

// Server is a running control plane.
type Server struct {
	cfg      Config
	lock     *os.File
	ca       *pki.Authority
	api      *api.Server
	auditKey ed25519.PrivateKey
	store    store.Store
	leases   *lease.Book
	keyring  *data.Keyring
	bucket   interface{ Close() error }
	loop     *control.Loop
	http     *http.Server
	listener net.Listener
	url      string

	poolDefs    []poolfile.Pool    // the pools file's pools, for their drivers
	cancel      context.CancelFunc // ends the loop and requests in flight
	cancelAgent context.CancelFunc // ends the local agent and the pools' drivers
	wg          sync.WaitGroup     // the loop and the HTTP server
	agentWG     sync.WaitGroup
	errc        chan error
	stop        sync.Once
}

// Start opens the control plane's state and starts serving. It returns
// once the server accepts requests.
func Start(ctx context.Context, cfg Config) (_ *Server, err error) {
	if cfg.DataDir == "" {
		return nil, errors.New("server: a data directory is required")
	}
	cfg.Listen = cmp.Or(cfg.Listen, "127.0.0.1:7070")
	cfg.HeartbeatInterval = cmp.Or(cfg.HeartbeatInterval, time.Second)
	cfg.LeaseTTL = cmp.Or(cfg.LeaseTTL, 2500*time.Millisecond)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	s := &Server{cfg: cfg, errc: make(chan error, 2)}
	defer func() {
		if err != nil {
			s.closeState()
		}
	}()
	if s.lock, err = lockDir(cfg.DataDir); err != nil {
		return nil, err
	}
	if s.store, err = sqlite.Open(ctx, filepath.Join(cfg.DataDir, "lode.db")); err != nil {
		return nil, err
	}
	keeperURL := cfg.KeeperURL
	if keeperURL == "" {
		if keeperURL, err = data.EnsureLocalKey(filepath.Join(cfg.DataDir, "kek.key")); err != nil {
			return nil, err
		}
	}
	if s.keyring, err = data.OpenKeyring(ctx, keeperURL); err != nil {
		return nil, err
	}
	if s.auditKey, err = auditKey(filepath.Join(cfg.DataDir, "audit.key")); err != nil {
		return nil, err
	}
	blobURL := cmp.Or(cfg.BlobURL, "file://"+filepath.Join(cfg.DataDir, "blobs"))
	bucket, err := data.OpenBucket(ctx, blobURL)
	if err != nil {
		return nil, err
	}
	s.bucket = bucket

	if s.listener, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, fmt.Errorf("listen on %s: %w (is another lode server running? pick another with --listen)", cfg.Listen, err)
	}
	s.url = cmp.Or(cfg.PublicURL, "https://"+s.listener.Addr().String())
	if s.ca, err = pki.Open(cfg.DataDir); err != nil {
		s.listener.Close()
		return nil, err
	}
	tlsConfig, err := s.tlsConfig()
	if err != nil {
		s.listener.Close()
		return nil, err
	}

	pools, err := s.firstStart(ctx)
	if err != nil {
		s.listener.Close()
		return nil, err
	}
	adminToken, err := s.bootstrapAdmin(ctx)
	if err != nil {
		s.listener.Close()
		return nil, err
	}
	joinSecret, err := s.joinTokens(ctx, pools)
	if err != nil {
		s.listener.Close()
		return nil, err
	}
	if err := s.applyPoolsFile(ctx); err != nil {
		s.listener.Close()
		return nil, err
	}
	s.leases = lease.NewBook()
	if err := s.graceLeases(ctx); err != nil {
		s.listener.Close()
		return nil, err
	}

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	s.loop = control.New(control.Config{
		Store: s.store, Logger: cfg.Logger.With("component", "control"),
		OnChange: func() { s.api.Changed() }, Reliability: cfg.Reliability, Leases: s.leases,
	})
	s.api = api.New(api.Config{
		Store: s.store, Chunks: data.NewBucketStore(bucket), Keyring: s.keyring,
		Logger: cfg.Logger.With("component", "api"), Scheduler: s.loop,
		HeartbeatInterval: cfg.HeartbeatInterval, LeaseTTL: cfg.LeaseTTL,
		PublicURL: s.url, Version: cfg.Version, Reliability: cfg.Reliability, Leases: s.leases,
		AuditKey: s.auditKey.Public().(ed25519.PublicKey), Authority: s.ca,
	})
	s.http = &http.Server{
		Handler:           s.api.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return runCtx },
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
		TLSConfig:         tlsConfig,
		// HTTP/1.1 only: heartbeat streams are full-duplex HTTP/1.1.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		if err := s.http.ServeTLS(s.listener, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.errc <- err
		}
	}()
	go func() {
		defer s.wg.Done()
		s.loop.Run(runCtx)
	}()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.sealLoop(runCtx, cmp.Or(cfg.AuditSealEvery, time.Minute))
	}()
	agentCtx, cancelAgent := context.WithCancel(context.WithoutCancel(ctx))
	s.cancelAgent = cancelAgent
	if !cfg.NoLocalPool {
		if err := s.startLocalAgent(agentCtx, pools[LocalPool]); err != nil {
			s.Shutdown(context.Background())
			return nil, err
		}
	}
	if err := s.startDrivers(agentCtx); err != nil {
		s.Shutdown(context.Background())
		return nil, err
	}
	if joinSecret != "" {
		fmt.Fprintf(cfg.Out, "lode: first start. Agents join the %q pool with (shown this once; `lode pools token %s` makes another):\n  %s\n",
			DefaultPool, DefaultPool, api.JoinCommand(s.url, joinSecret, s.ca.Fingerprint()))
	}
	if adminToken != "" {
		fmt.Fprintf(cfg.Out, "lode: first start. The administrator's API token (shown this once; commands with --local on this machine read it from %s, mode 0600):\n  %s\n",
			filepath.Join(cfg.DataDir, AdminTokenFile), adminToken)
	}
	cfg.Logger.Info("serving", slog.String("url", s.url), slog.String("data_dir", cfg.DataDir))
	return s, nil
}

// firstStart creates the built-in pools when they do not exist. The map
// also holds "created" when the default pool was made just now.
func (s *Server) firstStart(ctx context.Context) (map[string]*store.Pool, error) {
	out := map[string]*store.Pool{}
	want := []store.Pool{
		{Name: DefaultPool, Driver: "agent", Region: "", Tier: core.TierCommunity,
			Interconnect: core.Interconnect{Domain: "internet", Gbps: 1}},
		// Ranks of a gang on this machine talk over loopback.
		{Name: LocalPool, Driver: "agent", Region: "local", Tier: core.TierPrivate,
			Interconnect: core.Interconnect{Domain: "loopback", Gbps: 1000, MultiNode: true}},
	}
	for _, w := range want {
		p, err := s.store.PoolGetByName(ctx, w.Name)
		if errors.Is(err, store.ErrNotFound) {
			p = &w
			p.ID, p.State, p.CreatedAt = core.NewID("pool"), store.PoolActive, time.Now().UTC()
			if err := s.store.PoolCreate(ctx, p); err != nil {
				return nil, err
			}
			if w.Name == DefaultPool {
				out["created"] = p
			}
		} else if err != nil {
			return nil, err
		}
		out[w.Name] = p
	}
	return out, nil
}

// applyPoolsFile creates or updates the pools the pools file names.
func (s *Server) applyPoolsFile(ctx context.Context) error {
	if s.cfg.PoolsFile == "" {
		return nil
	}
	data, err := os.ReadFile(s.cfg.PoolsFile)
	if err != nil {
		return fmt.Errorf("pools file: %w", err)
	}
	defs, err := poolfile.Parse(s.cfg.PoolsFile, data)
	if err != nil {
		return err
	}
	s.poolDefs = defs
	for _, d := range defs {
		spec := d.Spec()
		p, err := s.store.PoolGetByName(ctx, d.Name)
		switch {
		case errors.Is(err, store.ErrNotFound):
			p = &store.Pool{ID: core.NewID("pool"), Name: d.Name, Driver: spec.Driver, CreatedAt: time.Now().UTC()}
			if err := api.ApplyPoolSpec(p, spec); err != nil {
				return fmt.Errorf("pools file: %s: %w", d.Name, err)
			}
			if err := s.store.PoolCreate(ctx, p); err != nil {
				return err
			}
			s.cfg.Logger.Info("pool created from the pools file", slog.String("pool", p.Name))
		case err != nil:
			return err
		case p.Driver != spec.Driver:
			return fmt.Errorf("pools file: %s: the pool's driver is %s, and a pool's driver cannot change (name a new pool)", d.Name, p.Driver)
		default:
			if err := api.ApplyPoolSpec(p, spec); err != nil {
				return fmt.Errorf("pools file: %s: %w", d.Name, err)
			}
			if err := s.store.PoolUpdate(ctx, p); err != nil {
				return err
			}
		}
	}
	return nil
}

// graceLeases gives every ready node a fresh lease at start, so agents that
// kept running while the server was down can reconnect before they are
// declared lost. The local pool's nodes died with the previous process: they
// leave at once, and their jobs are placed again.
func (s *Server) graceLeases(ctx context.Context) error {
	nodes, err := s.store.NodeList(ctx, &store.NodeListParams{State: store.NodeReady})
	if err != nil {
		return err
	}
	local, err := s.store.PoolGetByName(ctx, LocalPool)
	if err != nil {
		return err
	}
	draining, err := s.store.NodeList(ctx, &store.NodeListParams{State: store.NodeDraining})
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	for _, n := range append(nodes, draining...) {
		if n.PoolID == local.ID {
			err := s.store.NodeLeave(ctx, &store.NodeLeaveParams{NodeID: n.ID, Now: now})
			if err != nil && !errors.Is(err, store.ErrNodeGone) {
				return err
			}
			continue
		}
		s.leases.Add(n.ID, n.CredentialHash, now, now.Add(s.cfg.LeaseTTL))
	}
	return nil
}

func (s *Server) startLocalAgent(ctx context.Context, pool *store.Pool) error {
	a, err := agent.New(agent.Config{
		Server: s.url, JoinToken: s.api.InternalJoinToken(pool.ID), CA: s.ca.CertPEM(), Dir: filepath.Join(s.cfg.DataDir, "agent"),
		GPUs: s.cfg.LocalGPUs, Labels: map[string]string{"lode.dev/local": "true"},
		AdvertiseAddr: "127.0.0.1", Guard: s.cfg.Guard, Version: s.cfg.Version,
		Logger: s.cfg.Logger.With("component", "agent"),
	})
	if err != nil {
		return err
	}
	s.agentWG.Add(1)
	go func() {
		defer s.agentWG.Done()
		if err := a.Run(ctx); err != nil {
			s.errc <- fmt.Errorf("local agent: %w", err)
		}
	}()
	return nil
}

// CA is the control plane's CA certificate (PEM), for clients to trust.
func (s *Server) CA() []byte { return s.ca.CertPEM() }

// URL is where the server listens.
func (s *Server) URL() string { return s.url }

// Store is the server's store, for tests and in-process tools.
func (s *Server) Store() store.Store { return s.store }

// Err reports a failure of the server's own goroutines.
func (s *Server) Err() <-chan error { return s.errc }

// Shutdown stops the server: the local agent stops its tasks and leaves,
// requests in flight finish, and the state is closed. Remote agents keep
// their tasks running and reconnect when a server is back.
func (s *Server) Shutdown(ctx context.Context) error {
	var err error
	s.stop.Do(func() {
		shutdownCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		// The local agent and the pools' drivers leave through the API, so
		// they stop first, while the API still serves.
		s.cancelAgent()
		waitGroup(shutdownCtx, &s.agentWG)
		s.cancel()
		err = s.http.Shutdown(shutdownCtx)
		waitGroup(shutdownCtx, &s.wg)
		s.closeState()
	})
	return err
}

// lockDir takes the data directory for this process: two control planes on
// one directory would each think they own its local pool.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("another lode process (a `lode server` or a --local command) is using %s; "+
			"talk to it with --server, or wait for it to finish", dir)
	}
	return f, nil
}

func (s *Server) closeState() {
	if s.store != nil {
		s.store.Close()
	}
	if s.keyring != nil {
		s.keyring.Close()
	}
	if s.bucket != nil {
		s.bucket.Close()
	}
	if s.lock != nil {
		s.lock.Close() // releases the lock
	}
}

// waitGroup waits for wg or until ctx ends.
func waitGroup(ctx context.Context, wg *sync.WaitGroup) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}
