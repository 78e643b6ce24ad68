package server

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"lode.dev/lode/internal/api"
	"lode.dev/lode/internal/store/sqlite"
)

// TestAdministratorCanAlwaysSignIn: the first start leaves a valid admin
// token in the data directory; a start that finds no valid admin token
// (every one revoked, or a crash before one was stored) makes another;
// a start that finds one makes none.
func TestAdministratorCanAlwaysSignIn(t *testing.T) {
	dir := t.TempDir()
	start := func() {
		t.Helper()
		s, err := Start(context.Background(), Config{DataDir: dir, Listen: "127.0.0.1:0", NoLocalPool: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	valid := func(secret string) bool {
		t.Helper()
		st, err := sqlite.Open(context.Background(), filepath.Join(dir, "lode.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		toks, err := st.TokenList(context.Background(), "")
		if err != nil {
			t.Fatal(err)
		}
		for _, tok := range toks {
			if tok.Hash == api.HashSecret(secret) {
				return tok.Valid(time.Now())
			}
		}
		return false
	}
	start()
	first, err := ReadAdminToken(dir)
	if err != nil || !valid(first) {
		t.Fatalf("after the first start: token %q valid %v (%v)", first, valid(first), err)
	}
	start()
	if again, _ := ReadAdminToken(dir); again != first {
		t.Error("a second start replaced a valid admin token")
	}
	// Every admin token revoked: the next start makes a new one.
	st, err := sqlite.Open(context.Background(), filepath.Join(dir, "lode.db"))
	if err != nil {
		t.Fatal(err)
	}
	toks, _ := st.TokenList(context.Background(), "")
	for _, tok := range toks {
		st.TokenRevoke(context.Background(), tok.ID, time.Now())
	}
	st.Close()
	start()
	renewed, err := ReadAdminToken(dir)
	if err != nil || renewed == first || !valid(renewed) {
		t.Errorf("after every admin token was revoked: token changed %v, valid %v (%v)", renewed != first, valid(renewed), err)
	}
}
