package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/store"
	"lode.dev/lode/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := Open(context.Background(), filepath.Join(t.TempDir(), "lode.db"))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	})
}

func open(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	return s
}

func versions(t *testing.T, s *Store) []int {
	t.Helper()
	rows, err := s.r.Query(`SELECT version FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatalf("read schema_migrations: %v", err)
	}
	defer rows.Close()
	var vs []int
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		vs = append(vs, v)
	}
	return vs
}

func TestMigrationsOnReopen(t *testing.T) {
	ms, err := migrations()
	if err != nil {
		t.Fatalf("migrations: %v", err)
	}
	var want []int
	for _, m := range ms {
		want = append(want, m.version)
	}
	path := filepath.Join(t.TempDir(), "lode.db")
	for i := range 3 {
		s := open(t, path)
		if d := cmp.Diff(want, versions(t, s)); d != "" {
			t.Errorf("open %d: schema_migrations mismatch (-want +got):\n%s", i, d)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lode.db")
	s := open(t, path)
	if _, err := s.w.Exec(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (9999, 'from_the_future', 0)`); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := Open(context.Background(), path)
	if !errors.Is(err, ErrSchemaNewer) {
		t.Fatalf("Open of a newer database: got %v, want %v", err, ErrSchemaNewer)
	}
}

func TestFileModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "lode")
	path := filepath.Join(dir, "lode.db")
	s := open(t, path)
	defer s.Close()
	if err := s.PoolCreate(context.Background(), &store.Pool{ID: core.NewID("pool"), Name: "p"}); err != nil {
		t.Fatal(err) // a write, so that the -wal file exists
	}
	for _, c := range []struct {
		path string
		want os.FileMode
	}{
		{dir, 0o700},
		{path, 0o600},
		{path + "-wal", 0o600},
	} {
		fi, err := os.Stat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != c.want {
			t.Errorf("%s: mode %v, want %v", c.path, got, c.want)
		}
	}
}

func TestPragmas(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "lode.db"))
	defer s.Close()
	for _, c := range []struct {
		db     *sql.DB
		pragma string
		want   string
	}{
		{s.w, "journal_mode", "wal"},
		{s.w, "foreign_keys", "1"},
		{s.w, "synchronous", "1"},
		{s.r, "journal_mode", "wal"},
		{s.r, "query_only", "1"},
	} {
		var got string
		if err := c.db.QueryRow("PRAGMA " + c.pragma).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("PRAGMA %s = %s, want %s", c.pragma, got, c.want)
		}
	}
}

func TestSurvivesReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "lode.db")
	s := open(t, path)
	p := &store.Pool{ID: core.NewID("pool"), Name: "rigs", Driver: "agent", Tier: core.TierCertified, State: store.PoolActive,
		CreatedAt: time.Date(2030, 1, 2, 3, 4, 5, 6e6, time.UTC)}
	if err := s.PoolCreate(ctx, p); err != nil {
		t.Fatal(err)
	}
	d := &store.Dataset{Project: "vision", Name: "coco", ObjectID: "obj-1", Manifest: "m", CreatedAt: p.CreatedAt}
	if err := s.DatasetCommit(ctx, d); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}

	s = open(t, path)
	defer s.Close()
	got, err := s.PoolGet(ctx, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(p, got); diff != "" {
		t.Errorf("PoolGet after reopen mismatch (-want +got):\n%s", diff)
	}
	gotD, err := s.DatasetGet(ctx, "vision", "coco", 0)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(d, gotD); diff != "" {
		t.Errorf("DatasetGet after reopen mismatch (-want +got):\n%s", diff)
	}
}

// TestTwoStoresOneFile writes through two Stores on one file, as two
// processes would: the file lock and busy timeout make them take turns.
func TestTwoStoresOneFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "lode.db")
	a, b := open(t, path), open(t, path)
	defer a.Close()
	defer b.Close()
	const n = 40
	errs := make(chan error, 2*n)
	start := make(chan struct{})
	for _, s := range []*Store{a, b} {
		for range n {
			go func() {
				<-start
				errs <- s.DatasetCommit(ctx, &store.Dataset{Project: "p", Name: "d", ObjectID: "o", Manifest: "m"})
			}()
		}
	}
	close(start)
	for range 2 * n {
		if err := <-errs; err != nil {
			t.Errorf("DatasetCommit: %v", err)
		}
	}
	d, err := a.DatasetGet(ctx, "p", "d", 0)
	if err != nil {
		t.Fatal(err)
	}
	if d.Version != 2*n {
		t.Errorf("newest version %d, want %d", d.Version, 2*n)
	}
}

func TestOpenRefusesOddPaths(t *testing.T) {
	for _, p := range []string{"", filepath.Join(t.TempDir(), "a?b.db")} {
		if s, err := Open(context.Background(), p); err == nil {
			s.Close()
			t.Errorf("Open(%q): no error", p)
		}
	}
}

func TestGPUsFit(t *testing.T) {
	gpus := func(models ...string) []core.GPU {
		var gs []core.GPU
		for _, m := range models {
			gs = append(gs, core.GPU{Model: m})
		}
		return gs
	}
	for _, tc := range []struct {
		name    string
		node    []core.GPU
		demands []gpuDemand
		want    bool
	}{
		{"nothing asked", nil, nil, true},
		{"zero GPUs asked of a node with none", nil, []gpuDemand{{0, []string{"a100"}}}, true},
		{"one asked of a node with none", nil, []gpuDemand{{1, nil}}, false},
		{"any model", gpus("a100", "rtx4090"), []gpuDemand{{2, nil}}, true},
		{"too many", gpus("a100", "rtx4090"), []gpuDemand{{1, nil}, {2, nil}}, false},
		{"normalized names", gpus("NVIDIA GeForce RTX 4090"), []gpuDemand{{1, []string{"rtx4090"}}}, true},
		{"a model the node lacks", gpus("a100"), []gpuDemand{{1, []string{"h100"}}}, false},
		{"flexible and strict", gpus("a100", "rtx4090"), []gpuDemand{{1, []string{"a100", "rtx4090"}}, {1, []string{"a100"}}}, true},
		{"two strict for one", gpus("a100", "rtx4090"), []gpuDemand{{1, []string{"a100"}}, {1, []string{"a100"}}}, false},
		{"three models", gpus("a", "a", "b", "c"), []gpuDemand{{2, []string{"a", "b"}}, {1, []string{"b", "c"}}, {1, []string{"a"}}}, true},
		{"three models, one too many", gpus("a", "a", "b", "c"), []gpuDemand{{2, []string{"a", "b"}}, {1, []string{"b"}}, {1, []string{"a"}}}, false},
	} {
		if got := gpusFit(tc.node, tc.demands); got != tc.want {
			t.Errorf("%s: gpusFit = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestJoinTokensAdoptMovesCleartextTokens: a join token an older store
// kept in the clear becomes a hashed one that still admits, and the clear
// copy is gone; a second adoption finds nothing.
func TestJoinTokensAdoptMovesCleartextTokens(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "lode.db"))
	p := &store.Pool{ID: core.NewID("pool"), Name: "rigs", Driver: "agent"}
	if err := s.PoolCreate(ctx, p); err != nil {
		t.Fatal(err)
	}
	if _, err := s.w.ExecContext(ctx, `UPDATE pools SET join_token = 'old-secret' WHERE id = ?`, p.ID); err != nil {
		t.Fatal(err)
	}
	hash := func(s string) string { return "hash-of-" + s }
	n, err := s.JoinTokensAdopt(ctx, hash)
	if err != nil || n != 1 {
		t.Fatalf("JoinTokensAdopt = %d, %v; want 1", n, err)
	}
	jt, err := s.JoinTokenByHash(ctx, "hash-of-old-secret")
	if err != nil || jt.PoolID != p.ID || !jt.Valid(time.Now()) {
		t.Fatalf("the adopted token: %+v, %v", jt, err)
	}
	var left sql.NullString
	if err := s.r.QueryRowContext(ctx, `SELECT join_token FROM pools WHERE id = ?`, p.ID).Scan(&left); err != nil || left.Valid {
		t.Errorf("the clear token is still there: %q, %v", left.String, err)
	}
	if n, err := s.JoinTokensAdopt(ctx, hash); err != nil || n != 0 {
		t.Errorf("a second adoption = %d, %v; want 0", n, err)
	}
}
