package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/store"
)

func (f *fixture) log(a *store.Attempt, rank int, stream store.LogStream, data string, sec int) {
	f.t.Helper()
	noErr(f.t, "LogAppend", f.s.LogAppend(f.ctx, &store.LogAppendParams{Fence: fence(a), Rank: rank, Stream: stream, Data: []byte(data), Now: at(sec)}))
}

func (f *fixture) metric(a *store.Attempt, rank int, sec int, lines ...string) {
	f.t.Helper()
	var raw []json.RawMessage
	for _, l := range lines {
		raw = append(raw, json.RawMessage(l))
	}
	noErr(f.t, "MetricAppend", f.s.MetricAppend(f.ctx, &store.MetricAppendParams{Fence: fence(a), Rank: rank, Lines: raw, Now: at(sec)}))
}

func (f *fixture) checkpoint(a *store.Attempt, manifest string, sec int) *store.Checkpoint {
	f.t.Helper()
	c, err := f.s.CheckpointCommit(f.ctx, &store.CheckpointCommitParams{Fence: fence(a), Manifest: manifest, Files: 3, Bytes: 1 << 20, Now: at(sec)})
	noErr(f.t, "CheckpointCommit", err)
	return c
}

func (f *fixture) artifact(a *store.Attempt, manifest string, sec int) *store.Artifact {
	f.t.Helper()
	r, err := f.s.ArtifactCommit(f.ctx, &store.ArtifactCommitParams{Fence: fence(a), Manifest: manifest, Files: 2, Bytes: 4096, Now: at(sec)})
	noErr(f.t, "ArtifactCommit", err)
	return r
}

// jobWrites is everything the fenced methods can write for a job.
type jobWrites struct {
	Job         *store.Job
	Attempts    []*store.Attempt
	Logs        []*store.LogChunk
	Metrics     []*store.Metric
	Checkpoints []*store.Checkpoint
	Artifact    *store.Artifact
}

func (f *fixture) writes(jobID string) jobWrites {
	f.t.Helper()
	w := jobWrites{Job: f.getJob(jobID), Attempts: f.attempts(jobID)}
	var err error
	w.Logs, err = f.s.LogList(f.ctx, &store.LogListParams{JobID: jobID})
	noErr(f.t, "LogList", err)
	w.Metrics, err = f.s.MetricList(f.ctx, &store.MetricListParams{JobID: jobID})
	noErr(f.t, "MetricList", err)
	w.Checkpoints, err = f.s.CheckpointList(f.ctx, jobID)
	noErr(f.t, "CheckpointList", err)
	w.Artifact, err = f.s.ArtifactGet(f.ctx, jobID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		f.t.Fatalf("ArtifactGet: %v", err)
	}
	return w
}

// fencedCalls are the methods that take a fence, each making a change that
// would show in jobWrites.
func (f *fixture) fencedCalls() []struct {
	name string
	call func(store.Fence) error
} {
	return []struct {
		name string
		call func(store.Fence) error
	}{
		{"TaskUpdate", func(fc store.Fence) error {
			_, err := f.s.TaskUpdate(f.ctx, &store.TaskUpdateParams{Fence: fc, Rank: 0, State: core.TaskExited, ExitCode: 1, Now: at(9000)})
			return err
		}},
		{"LogAppend", func(fc store.Fence) error {
			return f.s.LogAppend(f.ctx, &store.LogAppendParams{Fence: fc, Stream: store.Stdout, Data: []byte("intruder\n"), Now: at(9000)})
		}},
		{"MetricAppend", func(fc store.Fence) error {
			return f.s.MetricAppend(f.ctx, &store.MetricAppendParams{Fence: fc, Lines: []json.RawMessage{json.RawMessage(`{"loss":0}`)}, Now: at(9000)})
		}},
		{"CheckpointCommit", func(fc store.Fence) error {
			_, err := f.s.CheckpointCommit(f.ctx, &store.CheckpointCommitParams{Fence: fc, Manifest: "intruder", Now: at(9000)})
			return err
		}},
		{"ArtifactCommit", func(fc store.Fence) error {
			_, err := f.s.ArtifactCommit(f.ctx, &store.ArtifactCommitParams{Fence: fc, Manifest: "intruder", Now: at(9000)})
			return err
		}},
	}
}

// refused checks that every fenced method refuses fc with ErrFenced and
// writes nothing for the job.
func (f *fixture) refused(what, jobID string, fc store.Fence) {
	f.t.Helper()
	before := f.writes(jobID)
	for _, c := range f.fencedCalls() {
		wantErr(f.t, fmt.Sprintf("%s with %s", c.name, what), c.call(fc), store.ErrFenced)
	}
	diff(f.t, "what the job holds after writes with "+what, before, f.writes(jobID))
}

func testFencing(t *testing.T, open func(t *testing.T) store.Store) {
	f := setup(t, open)
	p := f.pool()
	n1, n2 := f.node(p, lease(30)), f.node(p)
	j := f.job(retries(5, 0))
	a1 := f.runAll(f.place(j, p, 1, n1), 2)
	f.log(a1, 0, store.Stdout, "step 1\n", 3)
	f.metric(a1, 0, 3, `{"step":1}`)
	f.checkpoint(a1, "ckpt-1", 3)
	f.artifact(a1, "out-1", 3)

	f.refused("a wrong token", j.ID, store.Fence{AttemptID: a1.ID, Token: "not-the-token"})
	f.refused("no token", j.ID, store.Fence{AttemptID: a1.ID})
	f.refused("a missing attempt", j.ID, store.Fence{AttemptID: "att-nope", Token: a1.FencingToken})

	f.expire(31) // the job goes back to the queue
	f.refused("a lost attempt", j.ID, fence(a1))
	a2 := f.runAll(f.place(j, p, 40, n2), 41)
	f.refused("an old attempt after a new placement", j.ID, fence(a1))
	f.refused("another attempt's token", j.ID, store.Fence{AttemptID: a2.ID, Token: a1.FencingToken})

	// The current attempt writes as it should.
	f.log(a2, 0, store.Stdout, "step 2\n", 42)
	f.metric(a2, 0, 42, `{"step":2}`)
	if c := f.checkpoint(a2, "ckpt-2", 42); c.Version != 2 {
		t.Errorf("CheckpointCommit of the new attempt: version %d, want 2", c.Version)
	}
	f.artifact(a2, "out-2", 42)

	f.report(a2, 0, core.TaskExited, 0, 50)
	f.refused("a finished attempt", j.ID, fence(a2))
}

func testCheckpoints(t *testing.T, open func(t *testing.T) store.Store) {
	f := setup(t, open)
	p := f.pool()
	n := f.node(p)
	j := f.job(retries(0, 1))
	a1 := f.runAll(f.place(j, p, 1, n), 2)

	_, err := f.s.CheckpointLatest(f.ctx, j.ID)
	wantErr(t, "CheckpointLatest of a job with none", err, store.ErrNotFound)
	c1 := f.checkpoint(a1, "m1", 3)
	diff(t, "CheckpointCommit", &store.Checkpoint{JobID: j.ID, Version: 1, AttemptID: a1.ID, Manifest: "m1", Files: 3, Bytes: 1 << 20, CreatedAt: at(3)}, c1)
	c2 := f.checkpoint(a1, "m2", 4)
	latest, err := f.s.CheckpointLatest(f.ctx, j.ID)
	noErr(t, "CheckpointLatest", err)
	diff(t, "CheckpointLatest", c2, latest)

	// A rank fails and the job is placed again: numbering goes on.
	f.report(a1, 0, core.TaskExited, 1, 5)
	latest, err = f.s.CheckpointLatest(f.ctx, j.ID)
	noErr(t, "CheckpointLatest after the attempt failed", err)
	diff(t, "CheckpointLatest after the attempt failed", c2, latest)
	a2 := f.runAll(f.place(j, p, 6, n), 7)
	c3 := f.checkpoint(a2, "m3", 8)
	diff(t, "CheckpointCommit of the second attempt", &store.Checkpoint{JobID: j.ID, Version: 3, AttemptID: a2.ID, Manifest: "m3", Files: 3, Bytes: 1 << 20, CreatedAt: at(8)}, c3)

	// Ranks committing at once get distinct versions.
	errs := race(8, func(i int) error {
		_, err := f.s.CheckpointCommit(f.ctx, &store.CheckpointCommitParams{Fence: fence(a2), Manifest: fmt.Sprint("r", i), Now: at(9)})
		return err
	})
	for i, err := range errs {
		noErr(t, fmt.Sprint("racing CheckpointCommit ", i), err)
	}
	list, err := f.s.CheckpointList(f.ctx, j.ID)
	noErr(t, "CheckpointList", err)
	slices.SortFunc(list, func(a, b *store.Checkpoint) int { return a.Version - b.Version })
	var versions []int
	for _, c := range list {
		versions = append(versions, c.Version)
	}
	diff(t, "CheckpointList versions", []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, versions)
	diff(t, "CheckpointList", []*store.Checkpoint{c1, c2, c3}, list[:3])
	latest, err = f.s.CheckpointLatest(f.ctx, j.ID)
	noErr(t, "CheckpointLatest", err)
	diff(t, "CheckpointLatest version", 11, latest.Version)

	other := f.job()
	list, err = f.s.CheckpointList(f.ctx, other.ID)
	noErr(t, "CheckpointList of a job with none", err)
	diff(t, "CheckpointList of a job with none", []*store.Checkpoint(nil), list)
	_, err = f.s.CheckpointList(f.ctx, "job-nope")
	wantErr(t, "CheckpointList of a missing job", err, store.ErrNotFound)
	_, err = f.s.CheckpointLatest(f.ctx, "job-nope")
	wantErr(t, "CheckpointLatest of a missing job", err, store.ErrNotFound)
}

func testArtifacts(t *testing.T, open func(t *testing.T) store.Store) {
	f := setup(t, open)
	p := f.pool()
	n := f.node(p)
	j := f.job(retries(0, 1))
	a1 := f.runAll(f.place(j, p, 1, n), 2)
	get := func(what string, want *store.Artifact) {
		t.Helper()
		got, err := f.s.ArtifactGet(f.ctx, j.ID)
		noErr(t, what, err)
		diff(t, what, want, got)
	}

	_, err := f.s.ArtifactGet(f.ctx, j.ID)
	wantErr(t, "ArtifactGet of a job with none", err, store.ErrNotFound)
	r1 := f.artifact(a1, "out-1", 3)
	diff(t, "ArtifactCommit", &store.Artifact{JobID: j.ID, AttemptID: a1.ID, Manifest: "out-1", Files: 2, Bytes: 4096, CreatedAt: at(3)}, r1)
	get("ArtifactGet", r1)
	r1b := f.artifact(a1, "out-1b", 4)
	get("ArtifactGet after the attempt committed again", r1b)

	f.report(a1, 0, core.TaskExited, 1, 5)
	a2 := f.runAll(f.place(j, p, 6, n), 7)
	get("ArtifactGet while the new attempt has sent none", r1b)
	r2 := f.artifact(a2, "out-2", 8)
	get("ArtifactGet after the new attempt committed", r2)

	_, err = f.s.ArtifactGet(f.ctx, "job-nope")
	wantErr(t, "ArtifactGet of a missing job", err, store.ErrNotFound)
}

func testLogs(t *testing.T, open func(t *testing.T) store.Store) {
	f := setup(t, open)
	p := f.pool()
	j1, j2 := f.job(ranks(2)), f.job()
	a1 := f.runAll(f.place(j1, p, 1, f.node(p), f.node(p)), 2)
	a2 := f.runAll(f.place(j2, p, 1, f.node(p)), 2)
	f.log(a1, 0, store.Stdout, "hello\n", 3)
	f.log(a2, 0, store.Stderr, "another job\n", 3)
	f.log(a1, 1, store.Stderr, "warning\n", 4)
	f.log(a1, 0, store.Stdout, "\x00\xff binary\n", 5)
	f.log(a1, 1, store.Stdout, "bye\n", 6)

	list := func(p store.LogListParams) []*store.LogChunk {
		t.Helper()
		cs, err := f.s.LogList(f.ctx, &p)
		noErr(t, "LogList", err)
		return cs
	}
	all := list(store.LogListParams{JobID: j1.ID})
	chunk := func(rank int, stream store.LogStream, data string, sec int) *store.LogChunk {
		return &store.LogChunk{JobID: j1.ID, AttemptID: a1.ID, Rank: rank, Stream: stream, Data: []byte(data), Time: at(sec)}
	}
	diff(t, "LogList", []*store.LogChunk{
		chunk(0, store.Stdout, "hello\n", 3),
		chunk(1, store.Stderr, "warning\n", 4),
		chunk(0, store.Stdout, "\x00\xff binary\n", 5),
		chunk(1, store.Stdout, "bye\n", 6),
	}, all, cmpopts.IgnoreFields(store.LogChunk{}, "Seq"))
	if len(all) != 4 {
		t.FailNow()
	}
	for i := 1; i < len(all); i++ {
		if all[i].Seq <= all[i-1].Seq {
			t.Errorf("LogList: Seq %d follows %d", all[i].Seq, all[i-1].Seq)
		}
	}
	diff(t, "LogList after a Seq", all[2:], list(store.LogListParams{JobID: j1.ID, AfterSeq: all[1].Seq}))
	diff(t, "LogList with a limit", all[1:3], list(store.LogListParams{JobID: j1.ID, AfterSeq: all[0].Seq, Limit: 2}))
	diff(t, "LogList after the last", []*store.LogChunk(nil), list(store.LogListParams{JobID: j1.ID, AfterSeq: all[3].Seq}))
	if other := list(store.LogListParams{JobID: j2.ID}); len(other) != 1 || string(other[0].Data) != "another job\n" {
		t.Errorf("LogList of the other job: got %d chunks, want its one", len(other))
	}
	diff(t, "LogList of a job with none", []*store.LogChunk(nil), list(store.LogListParams{JobID: f.job().ID}))
	_, err := f.s.LogList(f.ctx, &store.LogListParams{JobID: "job-nope"})
	wantErr(t, "LogList of a missing job", err, store.ErrNotFound)
}

func testMetrics(t *testing.T, open func(t *testing.T) store.Store) {
	f := setup(t, open)
	p := f.pool()
	j := f.job(ranks(2))
	a := f.runAll(f.place(j, p, 1, f.node(p), f.node(p)), 2)
	f.metric(a, 0, 3, `{"step":1,"loss":2.5}`, `{"step":2,"loss":1.25}`)
	f.metric(a, 1, 4, `{"step":1,"acc":0.5}`)

	list := func(p store.MetricListParams) []*store.Metric {
		t.Helper()
		ms, err := f.s.MetricList(f.ctx, &p)
		noErr(t, "MetricList", err)
		return ms
	}
	// Lines are compared as JSON values: a backend may store them in a
	// normalized form.
	asJSON := cmp.Transformer("json", func(m json.RawMessage) any {
		var v any
		if err := json.Unmarshal(m, &v); err != nil {
			return fmt.Sprintf("invalid JSON %q", m)
		}
		return v
	})
	metric := func(rank int, data string, sec int) *store.Metric {
		return &store.Metric{JobID: j.ID, AttemptID: a.ID, Rank: rank, Data: json.RawMessage(data), Time: at(sec)}
	}
	all := list(store.MetricListParams{JobID: j.ID})
	diff(t, "MetricList", []*store.Metric{
		metric(0, `{"step":1,"loss":2.5}`, 3),
		metric(0, `{"step":2,"loss":1.25}`, 3),
		metric(1, `{"step":1,"acc":0.5}`, 4),
	}, all, asJSON, cmpopts.IgnoreFields(store.Metric{}, "Seq"))
	if len(all) != 3 {
		t.FailNow()
	}
	for i := 1; i < len(all); i++ {
		if all[i].Seq <= all[i-1].Seq {
			t.Errorf("MetricList: Seq %d follows %d", all[i].Seq, all[i-1].Seq)
		}
	}
	diff(t, "MetricList after a Seq", all[1:], list(store.MetricListParams{JobID: j.ID, AfterSeq: all[0].Seq}), asJSON)
	diff(t, "MetricList with a limit", all[:1], list(store.MetricListParams{JobID: j.ID, Limit: 1}), asJSON)

	err := f.s.MetricAppend(f.ctx, &store.MetricAppendParams{Fence: fence(a), Lines: []json.RawMessage{
		json.RawMessage(`{"step":3}`), json.RawMessage(`{"step":`),
	}, Now: at(5)})
	if err == nil {
		t.Errorf("MetricAppend of a line that is not JSON: no error")
	}
	diff(t, "MetricList after a refused MetricAppend", all, list(store.MetricListParams{JobID: j.ID}), asJSON)

	_, err = f.s.MetricList(f.ctx, &store.MetricListParams{JobID: "job-nope"})
	wantErr(t, "MetricList of a missing job", err, store.ErrNotFound)
}
