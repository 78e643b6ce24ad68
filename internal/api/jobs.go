package api

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"lode.dev/lode/internal/audit"
	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/spec"
	"lode.dev/lode/internal/store"
	"lode.dev/lode/internal/wire"
)

func (s *Server) submitJob(w http.ResponseWriter, r *http.Request) error {
	var req wire.SubmitJob
	if err := decode(r, &req); err != nil {
		return err
	}
	if err := spec.Validate(&req.Spec); err != nil {
		return badRequest("fix the spec; `lode run` checks it before it sends it", "invalid job spec: %v", err)
	}
	if err := allow(r, req.Spec.Project, core.RoleMember); err != nil {
		return err
	}
	ctx := r.Context()
	key, hash, err := idempotency(r, &req)
	if err != nil {
		return err
	}
	if key != "" {
		// A retry of a submission that got through: answer with its job.
		j, err := s.cfg.Store.JobGetByIdempotencyKey(ctx, req.Spec.Project, key)
		if err == nil {
			return s.replaySubmit(w, r, j, hash)
		}
		if !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	now := s.cfg.Now().UTC()
	job := &store.Job{
		ID: core.NewID("job"), Name: req.Spec.Name, Project: req.Spec.Project, Spec: req.Spec,
		State: core.JobQueued, Reason: "waiting for a place to run", Priority: req.Spec.Priority,
		CreatedAt: now, UpdatedAt: now, IdempotencyKey: key, RequestHash: hash,
	}
	// Check everything the job refers to before anything is written, so a
	// bad request leaves nothing behind.
	for _, d := range req.Spec.Datasets {
		ds, err := s.cfg.Store.DatasetGet(ctx, req.Spec.Project, d.Name, d.Version)
		if errors.Is(err, store.ErrNotFound) {
			v := "any version"
			if d.Version > 0 {
				v = fmt.Sprintf("version %d", d.Version)
			}
			return errorf(http.StatusBadRequest, "bad_request",
				fmt.Sprintf("push it with `lode data push %s DIR --project %s`, or give `from: DIR` for it in the spec", d.Name, req.Spec.Project),
				"dataset %q (%s) does not exist in project %q", d.Name, v, req.Spec.Project)
		}
		if err != nil {
			return err
		}
		job.Datasets = append(job.Datasets, store.DatasetRef{
			Name: d.Name, Version: ds.Version, Mount: d.Mount, ObjectID: ds.ObjectID, Manifest: ds.Manifest,
		})
	}
	if req.WorkdirObject != "" {
		o, err := s.cfg.Store.ObjectGet(ctx, req.WorkdirObject)
		if errors.Is(err, store.ErrNotFound) {
			return badRequest("upload the working directory again", "workdir object %q does not exist", req.WorkdirObject)
		}
		if err != nil {
			return err
		}
		if o.Kind != store.ObjectWorkdir || o.Project != req.Spec.Project {
			return badRequest("", "object %q is not a working directory of project %q", o.ID, req.Spec.Project)
		}
		if req.WorkdirManifest == "" {
			return badRequest("", "workdir_manifest is required with workdir_object")
		}
		if _, err := s.cfg.Chunks.GetManifest(ctx, o.ID, req.WorkdirManifest); err != nil {
			return badRequest("upload the working directory again", "workdir manifest %q: %v", req.WorkdirManifest, err)
		}
		job.WorkdirObject, job.WorkdirManifest = o.ID, req.WorkdirManifest
	}
	dataObj, err := s.newObject(ctx, store.ObjectJobData, req.Spec.Project, "")
	if err != nil {
		return err
	}
	job.DataObject = dataObj.ObjectID
	if err := s.cfg.Store.JobCreate(ctx, job); err != nil {
		if key != "" && errors.Is(err, store.ErrConflict) {
			// The same submission, sent twice at once, lost the race to
			// its twin (whose answer is this one's too). The data object
			// made above stays behind, empty and unused.
			if j, err := s.cfg.Store.JobGetByIdempotencyKey(ctx, req.Spec.Project, key); err == nil {
				return s.replaySubmit(w, r, j, hash)
			}
		}
		return err
	}
	s.metrics.submitted.Inc()
	s.record(ctx, audit.JobSubmitted, actor(r.Context()), job.ID, job.Project,
		map[string]string{"name": job.Name, "classification": job.Spec.Classification.String()})
	s.cfg.Logger.Info("job submitted", "job", job.ID, "name", job.Name, "project", job.Project)
	s.cfg.Scheduler.Wake()
	return writeJSON(w, http.StatusCreated, wire.JobDetail{Job: *job})
}

// maxIdempotencyKey bounds the Idempotency-Key header.
const maxIdempotencyKey = 255

// idempotency reads a submission's idempotency key and digests the request,
// so that a retry can be told from the key's reuse for another job.
func idempotency(r *http.Request, req *wire.SubmitJob) (key, hash string, err error) {
	key = r.Header.Get(wire.HeaderIdempotencyKey)
	if len(key) > maxIdempotencyKey {
		return "", "", badRequest("use a random key, such as a UUID", "%s header over %d bytes", wire.HeaderIdempotencyKey, maxIdempotencyKey)
	}
	if key == "" {
		return "", "", nil
	}
	b, err := json.Marshal(req)
	if err != nil {
		return "", "", err
	}
	sum := sha256.Sum256(b)
	return key, hex.EncodeToString(sum[:]), nil
}

// replaySubmit answers a retried submission with the job it created, or
// refuses a key reused for a different request.
func (s *Server) replaySubmit(w http.ResponseWriter, r *http.Request, j *store.Job, hash string) error {
	if j.RequestHash != hash {
		return errorf(http.StatusConflict, "conflict", "send a new job with a new key",
			"%s %q was already used for another submission (job %s)", wire.HeaderIdempotencyKey, j.IdempotencyKey, j.ID)
	}
	s.cfg.Logger.Info("job submission retried", "job", j.ID, "project", j.Project)
	w.Header().Set(wire.HeaderReplayed, "true")
	return writeJSON(w, http.StatusOK, wire.JobDetail{Job: *j})
}

func (s *Server) listJobs(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	p := &store.JobListParams{Project: q.Get("project")}
	for _, st := range q["state"] {
		p.States = append(p.States, core.JobState(st))
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 {
			return badRequest("", "limit must be a non-negative integer, not %q", l)
		}
		p.Limit = n
	}
	if p.Project != "" {
		if err := allow(r, p.Project, core.RoleViewer); err != nil {
			return err
		}
	}
	jobs, err := s.cfg.Store.JobList(r.Context(), p)
	if err != nil {
		return err
	}
	jobs = slices.DeleteFunc(jobs, func(j *store.Job) bool { return !visible(r, j.Project) })
	return writeJSON(w, http.StatusOK, wire.JobList{Jobs: nonNil(jobs)})
}

// jobFor reads a job the caller holds at least role need in.
func (s *Server) jobFor(r *http.Request, id string, need core.Role) (*store.Job, error) {
	j, err := s.cfg.Store.JobGet(r.Context(), id)
	if err != nil {
		return nil, err
	}
	return j, allow(r, j.Project, need)
}

func (s *Server) jobDetail(r *http.Request, id string) (*wire.JobDetail, error) {
	j, err := s.jobFor(r, id, core.RoleViewer)
	if err != nil {
		return nil, err
	}
	attempts, err := s.cfg.Store.AttemptListByJob(r.Context(), id)
	if err != nil {
		return nil, err
	}
	d := &wire.JobDetail{Job: *j, AttemptList: nonNil(attempts)}
	if j.State == core.JobQueued {
		d.Pending = s.cfg.Scheduler.Pending(j.ID)
	}
	return d, nil
}

func (s *Server) getJob(w http.ResponseWriter, r *http.Request) error {
	d, err := s.jobDetail(r, r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, d)
}

func (s *Server) cancelJob(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	j, err := s.jobFor(r, id, core.RoleMember)
	if err != nil {
		return err
	}
	if _, err := s.cfg.Store.JobCancel(r.Context(), &store.JobCancelParams{JobID: id, Now: s.cfg.Now().UTC()}); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return errorf(http.StatusConflict, "conflict", "", "job %s has already ended", id)
		}
		return err
	}
	s.leases.Notify() // the job's nodes must stop its tasks
	s.record(r.Context(), audit.JobCancelled, actor(r.Context()), id, j.Project, nil)
	s.changes.broadcast()
	d, err := s.jobDetail(r, id)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, d)
}

func afterParam(r *http.Request) (int64, error) {
	a := r.URL.Query().Get("after")
	if a == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(a, 10, 64)
	if err != nil || n < 0 {
		return 0, badRequest("", "after must be a non-negative integer, not %q", a)
	}
	return n, nil
}

// logPage bounds one read of the log table.
const logPage = 500

func (s *Server) jobLogs(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	after, err := afterParam(r)
	if err != nil {
		return err
	}
	if _, err := s.jobFor(r, id, core.RoleViewer); err != nil {
		return err
	}
	if r.URL.Query().Get("follow") != "true" {
		chunks, err := s.cfg.Store.LogList(r.Context(), &store.LogListParams{JobID: id, AfterSeq: after})
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, map[string]any{"chunks": nonNil(chunks)})
	}
	return s.followLogs(w, r, id, after)
}

// followLogs streams a job's output as server-sent events until the job
// ends and everything was sent, or the client goes away.
func (s *Server) followLogs(w http.ResponseWriter, r *http.Request, id string, after int64) error {
	flusher, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	send := func(ev wire.LogEvent) error {
		b, err := json.Marshal(ev)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "data: %s\n\n", b); err != nil {
			return err
		}
		if flusher != nil {
			flusher.Flush()
		}
		return nil
	}
	ctx := r.Context()
	// A slow safety net: job state changes made by other processes (a
	// second server on the same database, later) reach us this way.
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		changed := s.changes.wait()
		job, err := s.cfg.Store.JobGet(ctx, id)
		if err != nil {
			return nil // the stream has started; the client sees it end
		}
		for {
			chunks, err := s.cfg.Store.LogList(ctx, &store.LogListParams{JobID: id, AfterSeq: after, Limit: logPage})
			if err != nil {
				return nil
			}
			for _, c := range chunks {
				if err := send(wire.LogEvent{Chunk: c}); err != nil {
					return nil
				}
				after = c.Seq
			}
			if len(chunks) < logPage {
				break
			}
		}
		if job.State.Terminal() {
			_ = send(wire.LogEvent{End: true, State: job.State})
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-tick.C:
		}
	}
}

func (s *Server) jobMetrics(w http.ResponseWriter, r *http.Request) error {
	after, err := afterParam(r)
	if err != nil {
		return err
	}
	id := r.PathValue("id")
	if _, err := s.jobFor(r, id, core.RoleViewer); err != nil {
		return err
	}
	ms, err := s.cfg.Store.MetricList(r.Context(), &store.MetricListParams{JobID: id, AfterSeq: after})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, wire.MetricList{Metrics: nonNil(ms)})
}

func (s *Server) jobCheckpoints(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if _, err := s.jobFor(r, id, core.RoleViewer); err != nil {
		return err
	}
	cks, err := s.cfg.Store.CheckpointList(r.Context(), id)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, wire.CheckpointList{Checkpoints: nonNil(cks)})
}

func (s *Server) jobArtifacts(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	j, err := s.jobFor(r, id, core.RoleMember)
	if err != nil {
		return err
	}
	a, err := s.cfg.Store.ArtifactGet(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return errorf(http.StatusNotFound, "not_found", "outputs are uploaded when a task ends; see `lode status "+id+"`",
			"job %s (%s) has no outputs yet", id, j.State)
	}
	if err != nil {
		return err
	}
	key, err := s.objectKey(r.Context(), j.DataObject)
	if err != nil {
		return err
	}
	s.record(r.Context(), audit.ArtifactDownloaded, actor(r.Context()), j.ID, j.Project, map[string]string{"object": j.DataObject, "manifest": a.Manifest})
	return writeJSON(w, http.StatusOK, wire.ArtifactAccess{Artifact: a, ObjectKey: wire.ObjectKey{ObjectID: j.DataObject, DataKey: key}})
}

// nonNil turns a nil slice into an empty one so JSON shows [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
