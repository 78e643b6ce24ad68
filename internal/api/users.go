package api

import (
	"errors"
	"net/http"
	"time"

	"lode.dev/lode/internal/audit"
	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/store"
	"lode.dev/lode/internal/wire"
)

// Users, their API tokens and their roles in projects.

func (s *Server) whoAmI(w http.ResponseWriter, r *http.Request) error {
	c := callerOf(r)
	return writeJSON(w, http.StatusOK, wire.WhoAmI{User: *c.user, Roles: c.roles})
}

func (s *Server) createUser(w http.ResponseWriter, r *http.Request) error {
	var req wire.CreateUser
	if err := decode(r, &req); err != nil {
		return err
	}
	if !namePattern.MatchString(req.Name) {
		return badRequest("use lower-case letters, digits, '.', '_' and '-'", "bad user name %q", req.Name)
	}
	u := &store.User{ID: core.NewID("user"), Name: req.Name, Admin: req.Admin, CreatedAt: s.cfg.Now().UTC()}
	if err := s.cfg.Store.UserCreate(r.Context(), u); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return errorf(http.StatusConflict, "conflict", "", "user %q exists", req.Name)
		}
		return err
	}
	s.record(r.Context(), audit.UserChanged, actor(r.Context()), u.Name, "", map[string]string{"op": "create", "admin": boolText(u.Admin)})
	return writeJSON(w, http.StatusCreated, u)
}

func (s *Server) listUsers(w http.ResponseWriter, r *http.Request) error {
	us, err := s.cfg.Store.UserList(r.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, wire.UserList{Users: nonNil(us)})
}

// maxTokenLife bounds a token's life when one is asked for.
const maxTokenLife = 10 * 365 * 24 * time.Hour

func (s *Server) createToken(w http.ResponseWriter, r *http.Request) error {
	var req wire.CreateToken
	if err := decode(r, &req); err != nil {
		return err
	}
	c := callerOf(r)
	u := c.user
	if req.User != "" && req.User != u.Name {
		if !u.Admin {
			return errorf(http.StatusForbidden, "forbidden", "", "only an administrator makes tokens for other users")
		}
		var err error
		if u, err = s.cfg.Store.UserGetByName(r.Context(), req.User); err != nil {
			return err
		}
	}
	life := time.Duration(req.ExpiresInS) * time.Second
	if req.ExpiresInS < 0 || life > maxTokenLife {
		return badRequest("", "expires_in_s must be between 0 (never) and %d", int64(maxTokenLife.Seconds()))
	}
	tok, err := s.issueToken(r, u, req.Name, life)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, tok)
}

// issueToken makes a token for u and records it in the audit log.
func (s *Server) issueToken(r *http.Request, u *store.User, name string, life time.Duration) (*wire.NewToken, error) {
	id, secret, hash := NewToken()
	now := s.cfg.Now().UTC()
	t := &store.Token{ID: id, UserID: u.ID, Name: name, Hash: hash, CreatedAt: now}
	if life > 0 {
		t.ExpiresAt = now.Add(life)
	}
	if err := s.cfg.Store.TokenCreate(r.Context(), t); err != nil {
		return nil, err
	}
	s.record(r.Context(), audit.TokenCreated, actor(r.Context()), t.ID, "", map[string]string{"user": u.Name, "name": name})
	return &wire.NewToken{Token: *t, User: u.Name, Secret: secret}, nil
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) error {
	c := callerOf(r)
	userID := c.user.ID
	if name := r.URL.Query().Get("user"); name != "" && name != c.user.Name {
		if !c.user.Admin {
			return errorf(http.StatusForbidden, "forbidden", "", "only an administrator lists other users' tokens")
		}
		u, err := s.cfg.Store.UserGetByName(r.Context(), name)
		if err != nil {
			return err
		}
		userID = u.ID
	}
	ts, err := s.cfg.Store.TokenList(r.Context(), userID)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, wire.TokenList{Tokens: nonNil(ts)})
}

func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request) error {
	c := callerOf(r)
	t, err := s.cfg.Store.TokenGet(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	if t.UserID != c.user.ID && !c.user.Admin {
		return errorf(http.StatusForbidden, "forbidden", "", "only an administrator revokes other users' tokens")
	}
	if err := s.cfg.Store.TokenRevoke(r.Context(), t.ID, s.cfg.Now().UTC()); err != nil {
		return err
	}
	s.record(r.Context(), audit.TokenRevoked, actor(r.Context()), t.ID, "", nil)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) listMembers(w http.ResponseWriter, r *http.Request) error {
	project := r.PathValue("name")
	if err := allow(r, project, core.RoleViewer); err != nil {
		return err
	}
	ms, err := s.cfg.Store.MemberList(r.Context(), &store.MemberListParams{Project: project})
	if err != nil {
		return err
	}
	out := wire.MemberList{Members: []*wire.MemberInfo{}}
	for _, m := range ms {
		u, err := s.cfg.Store.UserGet(r.Context(), m.UserID)
		if err != nil {
			return err
		}
		out.Members = append(out.Members, &wire.MemberInfo{Member: *m, User: u.Name})
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) putMember(w http.ResponseWriter, r *http.Request) error {
	project := r.PathValue("name")
	if err := allow(r, project, core.RoleAdmin); err != nil {
		return err
	}
	if !namePattern.MatchString(project) {
		return badRequest("use lower-case letters, digits, '.', '_' and '-'", "bad project name %q", project)
	}
	var req wire.MemberSpec
	if err := decode(r, &req); err != nil {
		return err
	}
	if _, err := core.ParseRole(string(req.Role)); err != nil {
		return badRequest("one of viewer, member, admin", "%v", err)
	}
	u, err := s.cfg.Store.UserGetByName(r.Context(), r.PathValue("user"))
	if err != nil {
		return err
	}
	m := &store.Member{Project: project, UserID: u.ID, Role: req.Role}
	if err := s.cfg.Store.MemberPut(r.Context(), m); err != nil {
		return err
	}
	s.record(r.Context(), audit.MemberChanged, actor(r.Context()), u.Name, project, map[string]string{"role": string(req.Role)})
	return writeJSON(w, http.StatusOK, wire.MemberInfo{Member: *m, User: u.Name})
}

func (s *Server) deleteMember(w http.ResponseWriter, r *http.Request) error {
	project := r.PathValue("name")
	if err := allow(r, project, core.RoleAdmin); err != nil {
		return err
	}
	u, err := s.cfg.Store.UserGetByName(r.Context(), r.PathValue("user"))
	if err != nil {
		return err
	}
	if err := s.cfg.Store.MemberDelete(r.Context(), project, u.ID); err != nil {
		return err
	}
	s.record(r.Context(), audit.MemberChanged, actor(r.Context()), u.Name, project, map[string]string{"role": ""})
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func boolText(b bool) string {
	if b {
		return "true"
	}
	return "false"
}
