package storetest

import (
	"testing"

	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/store"
)

// testUsers: users are found by ID and name; a name is taken once.
func testUsers(t *testing.T, open func(t *testing.T) store.Store) {
	f := setup(t, open)
	ada := &store.User{ID: core.NewID("user"), Name: "ada", Admin: true, CreatedAt: at(1)}
	bob := &store.User{ID: core.NewID("user"), Name: "bob", CreatedAt: at(2)}
	noErr(t, "UserCreate", f.s.UserCreate(f.ctx, bob))
	noErr(t, "UserCreate", f.s.UserCreate(f.ctx, ada))
	got, err := f.s.UserGet(f.ctx, ada.ID)
	noErr(t, "UserGet", err)
	diff(t, "UserGet", ada, got)
	got, err = f.s.UserGetByName(f.ctx, "bob")
	noErr(t, "UserGetByName", err)
	diff(t, "UserGetByName", bob, got)
	all, err := f.s.UserList(f.ctx)
	noErr(t, "UserList", err)
	diff(t, "UserList", []*store.User{ada, bob}, all)

	twin := &store.User{ID: core.NewID("user"), Name: "ada"}
	wantErr(t, "UserCreate with a taken name", f.s.UserCreate(f.ctx, twin), store.ErrConflict)
	_, err = f.s.UserGet(f.ctx, twin.ID)
	wantErr(t, "UserGet of the refused user", err, store.ErrNotFound)
	_, err = f.s.UserGetByName(f.ctx, "carol")
	wantErr(t, "UserGetByName of nobody", err, store.ErrNotFound)
}

// testTokens: tokens belong to a user, keep only their hash, and once
// revoked stay revoked from the first revocation on.
func testTokens(t *testing.T, open func(t *testing.T) store.Store) {
	f := setup(t, open)
	u := &store.User{ID: core.NewID("user"), Name: "ada"}
	noErr(t, "UserCreate", f.s.UserCreate(f.ctx, u))
	other := &store.User{ID: core.NewID("user"), Name: "bob"}
	noErr(t, "UserCreate", f.s.UserCreate(f.ctx, other))
	tok := &store.Token{ID: core.NewID("tok"), UserID: u.ID, Name: "laptop", Hash: "h1", CreatedAt: at(1), ExpiresAt: at(100)}
	noErr(t, "TokenCreate", f.s.TokenCreate(f.ctx, tok))
	forever := &store.Token{ID: core.NewID("tok"), UserID: u.ID, Name: "ci", Hash: "h2", CreatedAt: at(2)}
	noErr(t, "TokenCreate", f.s.TokenCreate(f.ctx, forever))
	theirs := &store.Token{ID: core.NewID("tok"), UserID: other.ID, Name: "x", Hash: "h3", CreatedAt: at(3)}
	noErr(t, "TokenCreate", f.s.TokenCreate(f.ctx, theirs))

	got, err := f.s.TokenGet(f.ctx, tok.ID)
	noErr(t, "TokenGet", err)
	diff(t, "TokenGet", tok, got)
	if !got.Valid(at(99)) || got.Valid(at(100)) {
		t.Errorf("a token expiring at 100 s: valid at 99 s %v, at 100 s %v", got.Valid(at(99)), got.Valid(at(100)))
	}
	mine, err := f.s.TokenList(f.ctx, u.ID)
	noErr(t, "TokenList", err)
	diff(t, "TokenList of a user", []*store.Token{tok, forever}, mine)
	all, err := f.s.TokenList(f.ctx, "")
	noErr(t, "TokenList of everyone", err)
	if len(all) != 3 {
		t.Errorf("TokenList of everyone: %d tokens, want 3", len(all))
	}

	noErr(t, "TokenRevoke", f.s.TokenRevoke(f.ctx, forever.ID, at(10)))
	noErr(t, "TokenRevoke again", f.s.TokenRevoke(f.ctx, forever.ID, at(20)))
	got, err = f.s.TokenGet(f.ctx, forever.ID)
	noErr(t, "TokenGet", err)
	if !got.RevokedAt.Equal(at(10)) || got.Valid(at(11)) {
		t.Errorf("revoked token: revoked at %v, valid %v; want revoked at the first revocation, invalid", got.RevokedAt, got.Valid(at(11)))
	}
	if got, _ := f.s.TokenGet(f.ctx, theirs.ID); !got.Valid(at(11)) {
		t.Error("revoking one token revoked another")
	}
	wantErr(t, "TokenRevoke of no token", f.s.TokenRevoke(f.ctx, "tok-nope", at(1)), store.ErrNotFound)
	wantErr(t, "TokenCreate for no user",
		f.s.TokenCreate(f.ctx, &store.Token{ID: core.NewID("tok"), UserID: "user-nope", Hash: "h"}), store.ErrNotFound)
}

// testMembers: a user has one role per project; roles are listed by
// project or by user, replaced, and taken away.
func testMembers(t *testing.T, open func(t *testing.T) store.Store) {
	f := setup(t, open)
	ada := &store.User{ID: "user-a", Name: "ada"}
	bob := &store.User{ID: "user-b", Name: "bob"}
	noErr(t, "UserCreate", f.s.UserCreate(f.ctx, ada))
	noErr(t, "UserCreate", f.s.UserCreate(f.ctx, bob))
	for _, m := range []*store.Member{
		{Project: "vision", UserID: ada.ID, Role: core.RoleViewer},
		{Project: "vision", UserID: bob.ID, Role: core.RoleAdmin},
		{Project: "nlp", UserID: ada.ID, Role: core.RoleMember},
		{Project: "vision", UserID: ada.ID, Role: core.RoleMember}, // replaces viewer
	} {
		noErr(t, "MemberPut", f.s.MemberPut(f.ctx, m))
	}
	vision, err := f.s.MemberList(f.ctx, &store.MemberListParams{Project: "vision"})
	noErr(t, "MemberList by project", err)
	diff(t, "MemberList by project", []*store.Member{
		{Project: "vision", UserID: ada.ID, Role: core.RoleMember}, {Project: "vision", UserID: bob.ID, Role: core.RoleAdmin}}, vision)
	adas, err := f.s.MemberList(f.ctx, &store.MemberListParams{UserID: ada.ID})
	noErr(t, "MemberList by user", err)
	diff(t, "MemberList by user", []*store.Member{
		{Project: "nlp", UserID: ada.ID, Role: core.RoleMember}, {Project: "vision", UserID: ada.ID, Role: core.RoleMember}}, adas)

	noErr(t, "MemberDelete", f.s.MemberDelete(f.ctx, "vision", ada.ID))
	wantErr(t, "MemberDelete again", f.s.MemberDelete(f.ctx, "vision", ada.ID), store.ErrNotFound)
	adas, _ = f.s.MemberList(f.ctx, &store.MemberListParams{UserID: ada.ID})
	diff(t, "MemberList after MemberDelete", []*store.Member{{Project: "nlp", UserID: ada.ID, Role: core.RoleMember}}, adas)

	wantErr(t, "MemberPut of no user", f.s.MemberPut(f.ctx, &store.Member{Project: "x", UserID: "user-nope", Role: core.RoleViewer}), store.ErrNotFound)
	if err := f.s.MemberPut(f.ctx, &store.Member{Project: "x", UserID: ada.ID, Role: "owner"}); err == nil {
		t.Error("MemberPut with an unknown role: want an error")
	}
}

// testJoinTokens: a pool may hold several join tokens, found by hash,
// each expiring and revoked on its own; a pool's deletion takes them.
func testJoinTokens(t *testing.T, open func(t *testing.T) store.Store) {
	f := setup(t, open)
	p := f.pool()
	other := f.pool(func(p *store.Pool) { p.Name = "other" })
	forever := &store.JoinToken{ID: core.NewID("jt"), PoolID: p.ID, Hash: "h1", CreatedAt: at(1)}
	daily := &store.JoinToken{ID: core.NewID("jt"), PoolID: p.ID, Hash: "h2", CreatedAt: at(2), ExpiresAt: at(86400)}
	theirs := &store.JoinToken{ID: core.NewID("jt"), PoolID: other.ID, Hash: "h3", CreatedAt: at(3)}
	for _, jt := range []*store.JoinToken{forever, daily, theirs} {
		noErr(t, "JoinTokenCreate", f.s.JoinTokenCreate(f.ctx, jt))
	}
	got, err := f.s.JoinTokenByHash(f.ctx, "h2")
	noErr(t, "JoinTokenByHash", err)
	diff(t, "JoinTokenByHash", daily, got)
	if !got.Valid(at(86399)) || got.Valid(at(86400)) {
		t.Errorf("a token expiring at 86400 s: valid just before %v, at %v", got.Valid(at(86399)), got.Valid(at(86400)))
	}
	list, err := f.s.JoinTokenList(f.ctx, p.ID)
	noErr(t, "JoinTokenList", err)
	diff(t, "JoinTokenList", []*store.JoinToken{forever, daily}, list)

	noErr(t, "JoinTokenRevoke", f.s.JoinTokenRevoke(f.ctx, forever.ID, at(10)))
	noErr(t, "JoinTokenRevoke again", f.s.JoinTokenRevoke(f.ctx, forever.ID, at(20)))
	got, _ = f.s.JoinTokenByHash(f.ctx, "h1")
	if !got.RevokedAt.Equal(at(10)) || got.Valid(at(11)) {
		t.Errorf("revoked join token: revoked at %v, valid %v", got.RevokedAt, got.Valid(at(11)))
	}
	if got, _ := f.s.JoinTokenByHash(f.ctx, "h3"); !got.Valid(at(11)) {
		t.Error("revoking one pool's token revoked another's")
	}
	wantErr(t, "JoinTokenCreate with a taken hash",
		f.s.JoinTokenCreate(f.ctx, &store.JoinToken{ID: core.NewID("jt"), PoolID: p.ID, Hash: "h1"}), store.ErrConflict)
	wantErr(t, "JoinTokenCreate for no pool",
		f.s.JoinTokenCreate(f.ctx, &store.JoinToken{ID: core.NewID("jt"), PoolID: "pool-nope", Hash: "h9"}), store.ErrNotFound)
	_, err = f.s.JoinTokenByHash(f.ctx, "nope")
	wantErr(t, "JoinTokenByHash of no token", err, store.ErrNotFound)
	wantErr(t, "JoinTokenRevoke of no token", f.s.JoinTokenRevoke(f.ctx, "jt-nope", at(1)), store.ErrNotFound)
}
