package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"

	"lode.dev/lode/internal/audit"
	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/data"
	"lode.dev/lode/internal/store"
	"lode.dev/lode/internal/wire"
)

const (
	// maxChunk bounds a sealed chunk: 4 MiB of data plus the seal.
	maxChunk = 4<<20 + 1024
	// maxManifest bounds a sealed manifest.
	maxManifest = 64 << 20
)

var namePattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$`)

// newObject creates an object and its data key, and returns the key in the
// clear for the caller that will seal data under it.
func (s *Server) newObject(ctx context.Context, kind, project, name string) (*wire.ObjectKey, error) {
	plain, wrapped, err := s.cfg.Keyring.NewDataKey(ctx)
	if err != nil {
		return nil, fmt.Errorf("new data key: %w", err)
	}
	o := &store.Object{ID: core.NewID("obj"), Kind: kind, Project: project, Name: name, WrappedKey: wrapped, CreatedAt: s.cfg.Now().UTC()}
	if err := s.cfg.Store.ObjectCreate(ctx, o); err != nil {
		return nil, err
	}
	s.record(ctx, audit.KeyGranted, actor(ctx), o.ID, project, map[string]string{"kind": kind, "name": name, "new": "true"})
	return &wire.ObjectKey{ObjectID: o.ID, DataKey: plain}, nil
}

// objectKey unwraps an object's data key.
func (s *Server) objectKey(ctx context.Context, objectID string) ([]byte, error) {
	o, err := s.cfg.Store.ObjectGet(ctx, objectID)
	if err != nil {
		return nil, err
	}
	key, err := s.cfg.Keyring.Unwrap(ctx, o.WrappedKey)
	if err != nil {
		return nil, fmt.Errorf("unwrap data key of %s: %w", objectID, err)
	}
	return key, nil
}

func (s *Server) createObject(w http.ResponseWriter, r *http.Request) error {
	var req wire.CreateObject
	if err := decode(r, &req); err != nil {
		return err
	}
	if !namePattern.MatchString(req.Project) {
		return badRequest("use lower-case letters, digits, '.', '_' and '-'", "bad project name %q", req.Project)
	}
	if err := allow(r, req.Project, core.RoleMember); err != nil {
		return err
	}
	ctx := r.Context()
	switch req.Kind {
	case store.ObjectWorkdir:
		if req.Name != "" {
			return badRequest("", "a workdir object has no name")
		}
	case store.ObjectDataset:
		if !namePattern.MatchString(req.Name) {
			return badRequest("use lower-case letters, digits, '.', '_' and '-', at most 64", "bad dataset name %q", req.Name)
		}
		for range 2 { // a concurrent first push may create it between our look and our write
			o, err := s.cfg.Store.ObjectGetByName(ctx, req.Project, store.ObjectDataset, req.Name)
			if err == nil {
				key, err := s.cfg.Keyring.Unwrap(ctx, o.WrappedKey)
				if err != nil {
					return fmt.Errorf("unwrap data key of %s: %w", o.ID, err)
				}
				s.record(ctx, audit.KeyGranted, actor(ctx), o.ID, req.Project, map[string]string{"kind": store.ObjectDataset, "name": req.Name})
				return writeJSON(w, http.StatusOK, wire.ObjectKey{ObjectID: o.ID, DataKey: key})
			}
			if !errors.Is(err, store.ErrNotFound) {
				return err
			}
			k, err := s.newObject(ctx, store.ObjectDataset, req.Project, req.Name)
			if errors.Is(err, store.ErrConflict) {
				continue
			}
			if err != nil {
				return err
			}
			return writeJSON(w, http.StatusCreated, k)
		}
		return errorf(http.StatusConflict, "conflict", "try again", "dataset object %q is being created concurrently", req.Name)
	default:
		return badRequest("clients create workdir and dataset objects; jobs get theirs from the server",
			"cannot create an object of kind %q", req.Kind)
	}
	k, err := s.newObject(ctx, req.Kind, req.Project, "")
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, k)
}

func (s *Server) missingChunks(w http.ResponseWriter, r *http.Request) error {
	var req wire.MissingChunks
	if err := decode(r, &req); err != nil {
		return err
	}
	if len(req.Addrs) > 10000 {
		return badRequest("ask in batches of at most 10000", "too many addresses: %d", len(req.Addrs))
	}
	if _, err := s.objectFor(r, r.PathValue("id"), false); err != nil {
		return err
	}
	missing, err := s.cfg.Chunks.MissingChunks(r.Context(), r.PathValue("id"), req.Addrs)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, wire.MissingChunks{Addrs: nonNil(missing)})
}

// readBody reads an octet-stream body of at most limit bytes.
func readBody(r *http.Request, limit int64) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, limit))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, errorf(http.StatusRequestEntityTooLarge, "too_large", "", "body over %d bytes", limit)
	}
	return b, err
}

// objectFor reads an object whose data the caller may read, or with write
// also write: a member of its project, or a worker with a grant for it. It
// also refuses writes to objects the store does not know, so the blob store
// holds nothing that no row accounts for.
func (s *Server) objectFor(r *http.Request, id string, write bool) (*store.Object, error) {
	o, err := s.cfg.Store.ObjectGet(r.Context(), id)
	if err != nil {
		return nil, err
	}
	return o, s.allowObject(r, o, core.RoleMember, write)
}

func (s *Server) putChunk(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := data.CheckChunkName(id, r.PathValue("addr")); err != nil {
		return err
	}
	if _, err := s.objectFor(r, id, true); err != nil {
		return err
	}
	b, err := readBody(r, maxChunk)
	if err != nil {
		return err
	}
	if err := s.cfg.Chunks.PutChunk(r.Context(), id, r.PathValue("addr"), b); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) getChunk(w http.ResponseWriter, r *http.Request) error {
	if err := data.CheckChunkName(r.PathValue("id"), r.PathValue("addr")); err != nil {
		return err
	}
	if _, err := s.objectFor(r, r.PathValue("id"), false); err != nil {
		return err
	}
	b, err := s.cfg.Chunks.GetChunk(r.Context(), r.PathValue("id"), r.PathValue("addr"))
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	_, err = w.Write(b)
	return err
}

func (s *Server) putManifest(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := data.CheckManifestName(id, r.PathValue("name")); err != nil {
		return err
	}
	if _, err := s.objectFor(r, id, true); err != nil {
		return err
	}
	b, err := readBody(r, maxManifest)
	if err != nil {
		return err
	}
	if err := s.cfg.Chunks.PutManifest(r.Context(), id, r.PathValue("name"), b); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) getManifest(w http.ResponseWriter, r *http.Request) error {
	if err := data.CheckManifestName(r.PathValue("id"), r.PathValue("name")); err != nil {
		return err
	}
	if _, err := s.objectFor(r, r.PathValue("id"), false); err != nil {
		return err
	}
	b, err := s.cfg.Chunks.GetManifest(r.Context(), r.PathValue("id"), r.PathValue("name"))
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	_, err = w.Write(b)
	return err
}

func (s *Server) commitDataset(w http.ResponseWriter, r *http.Request) error {
	var req wire.CommitDataset
	if err := decode(r, &req); err != nil {
		return err
	}
	if err := allow(r, req.Project, core.RoleMember); err != nil {
		return err
	}
	ctx := r.Context()
	o, err := s.cfg.Store.ObjectGet(ctx, req.ObjectID)
	if err != nil {
		return err
	}
	if o.Kind != store.ObjectDataset || o.Project != req.Project || o.Name != req.Name {
		return badRequest("", "object %s does not belong to dataset %s/%s", o.ID, req.Project, req.Name)
	}
	if _, err := s.cfg.Chunks.GetManifest(ctx, o.ID, req.Manifest); err != nil {
		return badRequest("push the directory again", "manifest %q is not stored: %v", req.Manifest, err)
	}
	d := &store.Dataset{
		Project: req.Project, Name: req.Name, ObjectID: o.ID, Manifest: req.Manifest,
		Classification: req.Classification, Files: req.Files, Bytes: req.Bytes, CreatedAt: s.cfg.Now().UTC(),
	}
	if err := s.cfg.Store.DatasetCommit(ctx, d); err != nil {
		return err
	}
	s.record(ctx, audit.DatasetCommitted, actor(ctx), d.Name, d.Project,
		map[string]string{"version": strconv.Itoa(d.Version), "classification": d.Classification.String()})
	return writeJSON(w, http.StatusCreated, wire.DatasetList{Datasets: []*store.Dataset{d}})
}

func (s *Server) listDatasets(w http.ResponseWriter, r *http.Request) error {
	project := r.URL.Query().Get("project")
	if project != "" {
		if err := allow(r, project, core.RoleViewer); err != nil {
			return err
		}
	}
	ds, err := s.cfg.Store.DatasetList(r.Context(), project)
	if err != nil {
		return err
	}
	ds = slices.DeleteFunc(ds, func(d *store.Dataset) bool { return !visible(r, d.Project) })
	return writeJSON(w, http.StatusOK, wire.DatasetList{Datasets: nonNil(ds)})
}

func (s *Server) deleteDataset(w http.ResponseWriter, r *http.Request) error {
	if err := allow(r, r.PathValue("project"), core.RoleAdmin); err != nil {
		return err
	}
	if err := s.cfg.Store.DatasetDelete(r.Context(), r.PathValue("project"), r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
