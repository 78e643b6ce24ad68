package api

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/store"
	"lode.dev/lode/internal/wire"
)

// Who may call what. Every route declares an access class; the class is
// checked before its handler runs, and handlers of project-scoped routes
// then check the caller's role in the project of what they touch (allow).
// docs/authorization.md is the table of the outcome, and a test checks the
// server against it.

// access is a route's class of callers.
type access int

const (
	// user routes need a signed-in user; handlers check project roles.
	// It is the zero value: a route that declares nothing is closed to
	// anyone without a token.
	user access = iota
	// public routes need no credential (health, the OpenAPI document) or
	// check their own (an agent's join token).
	public
	// worker routes are an agent's or a runner's: their handlers check the
	// node's credential or the attempt's fencing token.
	worker
	// admin routes need an administrator.
	admin
	// objectData routes (an object's chunks and manifests) serve users by
	// their role in the object's project, and workers by their grants: a
	// node or attempt whose live task reads or writes the object.
	objectData
)

// caller is who sent a request: a user (with their roles), a node, an
// attempt (a runner holding its fencing token), or nobody.
type caller struct {
	user  *store.User
	roles map[string]core.Role // project → role
	node  string
	fence store.Fence
}

func (c *caller) String() string {
	switch {
	case c.user != nil:
		return "user:" + c.user.Name
	case c.node != "":
		return "node:" + c.node
	case c.fence.AttemptID != "":
		return "attempt:" + c.fence.AttemptID
	}
	return "anonymous"
}

type callerKey struct{}

// callerOf returns who sent r, as authenticate found.
func callerOf(r *http.Request) *caller { return callerIn(r.Context()) }

func callerIn(ctx context.Context) *caller {
	if c, ok := ctx.Value(callerKey{}).(*caller); ok {
		return c
	}
	return &caller{}
}

// actor names the caller in the audit log.
func actor(ctx context.Context) string { return callerIn(ctx).String() }

// TokenPrefix starts every user API token, so that one pasted in the wrong
// place is recognizable (and found by secret scanners).
const TokenPrefix = "lode_"

// NewToken makes a user API token: its ID, the secret to show once, and the
// hash to keep.
func NewToken() (id, secret, hash string) {
	id = core.NewID("tok")
	secret = TokenPrefix + id + "_" + core.NewSecret()
	return id, secret, credentialHash(secret)
}

var errUnauthenticated = errorf(http.StatusUnauthorized, "unauthorized",
	"send an API token as `Authorization: Bearer TOKEN` (lode: --token or $LODE_TOKEN; the server printed an admin token at first start)",
	"no valid credential")

// authenticate finds who sent r and checks that the route's class admits
// them; it returns r with the caller in its context.
func (s *Server) authenticate(r *http.Request, a access) (*http.Request, error) {
	c := &caller{}
	switch {
	case a == public || a == worker:
		// Their handlers check their own credentials.
	case r.Header.Get(wire.HeaderNode) != "":
		id, err := s.node(r)
		if err != nil {
			return r, err
		}
		c.node = id
	case r.Header.Get(wire.HeaderAttempt) != "":
		c.fence = store.Fence{AttemptID: r.Header.Get(wire.HeaderAttempt), Token: r.Header.Get(wire.HeaderFence)}
		if err := s.checkFence(r.Context(), c.fence); err != nil {
			if errors.Is(err, store.ErrFenced) {
				// Whether the attempt exists is not the caller's to learn.
				return r, errUnauthenticated
			}
			return r, err
		}
	default:
		u, err := s.userOf(r)
		if err != nil {
			return r, err
		}
		c.user = u
		if c.roles, err = s.rolesOf(r.Context(), u); err != nil {
			return r, err
		}
	}
	// The caller goes with the request even when refused below, so that
	// the refusal is recorded under their name.
	r = r.WithContext(context.WithValue(r.Context(), callerKey{}, c))
	switch {
	case a == public || a == worker:
	case c.user == nil && a != objectData:
		return r, errorf(http.StatusForbidden, "forbidden", "", "%s may not call %s %s: it is for users", c, r.Method, r.URL.Path)
	case a == admin && !c.user.Admin:
		return r, errorf(http.StatusForbidden, "forbidden", "ask an administrator", "user %s is not an administrator", c.user.Name)
	}
	return r, nil
}

// userOf checks a request's API token and returns its user.
func (s *Server) userOf(r *http.Request) (*store.User, error) {
	secret, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	rest, ok2 := strings.CutPrefix(secret, TokenPrefix)
	if !ok || !ok2 {
		return nil, errUnauthenticated
	}
	id, _, ok := strings.Cut(rest, "_")
	if !ok {
		return nil, errUnauthenticated
	}
	ctx := r.Context()
	t, err := s.cfg.Store.TokenGet(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errUnauthenticated
	}
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare([]byte(t.Hash), []byte(credentialHash(secret))) != 1 {
		return nil, errUnauthenticated
	}
	if !t.Valid(s.cfg.Now()) {
		return nil, errorf(http.StatusUnauthorized, "unauthorized", "make a new token with `lode tokens create`",
			"token %s has expired or was revoked", t.ID)
	}
	return s.cfg.Store.UserGet(ctx, t.UserID)
}

func (s *Server) rolesOf(ctx context.Context, u *store.User) (map[string]core.Role, error) {
	ms, err := s.cfg.Store.MemberList(ctx, &store.MemberListParams{UserID: u.ID})
	if err != nil {
		return nil, err
	}
	roles := make(map[string]core.Role, len(ms))
	for _, m := range ms {
		roles[m.Project] = m.Role
	}
	return roles, nil
}

// checkFence checks that a fencing token is its attempt's current one and
// that the attempt is live.
func (s *Server) checkFence(ctx context.Context, f store.Fence) error {
	a, err := s.cfg.Store.AttemptGet(ctx, f.AttemptID)
	if errors.Is(err, store.ErrNotFound) {
		return errUnauthenticated
	}
	if err != nil {
		return err
	}
	if f.Token == "" || subtle.ConstantTimeCompare([]byte(a.FencingToken), []byte(f.Token)) != 1 || a.State.Terminal() {
		return fmt.Errorf("attempt %s: not its current fencing token, or it has ended: %w", f.AttemptID, store.ErrFenced)
	}
	return nil
}

// allow checks that the caller holds at least role need in project; an
// administrator holds every role everywhere.
func allow(r *http.Request, project string, need core.Role) error {
	c := callerOf(r)
	if c.user == nil {
		return errorf(http.StatusForbidden, "forbidden", "", "%s may not act in project %q", c, project)
	}
	if c.user.Admin || c.roles[project].Allows(need) {
		return nil
	}
	return errorf(http.StatusForbidden, "forbidden", "a project admin can grant it: `lode projects grant PROJECT USER ROLE`",
		"user %s needs the %s role in project %q", c.user.Name, need, project)
}

// visible filters names of projects to those the caller may view: all of
// them for an administrator.
func visible(r *http.Request, project string) bool {
	c := callerOf(r)
	return c.user != nil && (c.user.Admin || c.roles[project].Allows(core.RoleViewer))
}

// allowObject checks access to an object's data: a user by their role in
// its project (need), a worker by a grant, that is a live task of theirs
// whose job reads the object (datasets, working directory, its own data)
// or, to write, whose own data object it is: a worker never writes a
// dataset or a working directory it was only given to read.
func (s *Server) allowObject(r *http.Request, o *store.Object, need core.Role, write bool) error {
	c := callerOf(r)
	if c.user != nil {
		return allow(r, o.Project, need)
	}
	ctx := r.Context()
	var jobs []*store.Job
	switch {
	case c.node != "":
		tasks, err := s.cfg.Store.TaskListByNode(ctx, c.node)
		if err != nil {
			return err
		}
		for _, a := range tasks {
			if !a.AttemptState.Terminal() && !a.Task.State.Terminal() {
				jobs = append(jobs, a.Job)
			}
		}
	case c.fence.AttemptID != "":
		a, err := s.cfg.Store.AttemptGet(ctx, c.fence.AttemptID)
		if err != nil {
			return err
		}
		j, err := s.cfg.Store.JobGet(ctx, a.JobID)
		if err != nil {
			return err
		}
		jobs = append(jobs, j)
	}
	grants := func(j *store.Job) bool { return jobUses(j, o.ID) }
	if write {
		grants = func(j *store.Job) bool { return j.DataObject == o.ID }
	}
	if slices.ContainsFunc(jobs, grants) {
		return nil
	}
	return errorf(http.StatusForbidden, "forbidden", "", "%s holds no grant for object %s", c, o.ID)
}

// jobUses reports whether a job reads or writes an object.
func jobUses(j *store.Job, objectID string) bool {
	if j.DataObject == objectID || j.WorkdirObject == objectID {
		return true
	}
	return slices.ContainsFunc(j.Datasets, func(d store.DatasetRef) bool { return d.ObjectID == objectID })
}
