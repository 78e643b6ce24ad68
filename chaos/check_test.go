package chaos

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"lode.dev/lode/internal/client"
	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/data"
	"lode.dev/lode/internal/store"
	"lode.dev/lode/internal/store/sqlite"
)

// The invariants, checked from the outside once every job has ended:
//
//  1. Exactly once. Every job succeeded, with exactly one succeeded attempt
//     (its last), and its result (fetched and decrypted through the API)
//     is the sum of 1..target. A job that did not succeed, or whose result
//     is missing or wrong, counts as lost; one with two succeeded attempts
//     as duplicated.
//
//  2. Checkpoints never go backwards. Every committed version is fetched
//     and decrypted: the step inside never shrinks from one version to the
//     next (two versions may hold the same step: the agent may sync the
//     directory while the trainer's next checkpoint is still a temporary
//     file in it), and the last version holds the target. And every
//     attempt resumed from exactly the step of the newest version committed
//     before it was placed (by its job's earlier attempts; 0 when there is
//     none): the trainer prints that step first, in a log row stamped with
//     its attempt. Less would be committed work thrown away; more would be
//     a restore of something never committed (a fenced attempt's, or
//     another job's).
//
//  3. No write from a fenced attempt was accepted. Read from the database
//     (a copy, opened with internal/store/sqlite after the server stopped)
//     a job's attempts follow one another: attempt k+1 exists only once
//     attempt k has ended, and only the current attempt may write. So
//     every log, metric and checkpoint row of attempt k must come before
//     (by sequence or version number) every row of a later attempt, and no
//     row, artifact or task end of an attempt may be stamped after the
//     attempt's own end by more than lateSlack. A row that breaks either is
//     a stale write.
//
//     And nothing the server acknowledged is lost, through its SIGKILLs:
//     every checkpoint version and every set of outputs an agent logged as
//     committed is in the database, under the attempt that committed it.
//
//  4. No task process is left behind. Every trainer, and the helper child
//     it starts, records its PID and start time; once the jobs have ended
//     none may be alive, with every agent still running (so agents must
//     kill the tasks of attempts they learn are gone, and the exec-guards
//     of killed agents must kill theirs). After the agents stop, their
//     task directories (which hold decrypted data) must be gone too.
//
// The server stamps a write with its clock before the write's transaction,
// and ends a lost attempt with the time its control cycle began, before the
// cycle's transaction: a write accepted just before the end may carry a
// slightly later time. lateSlack covers that, and no more.
const lateSlack = 250 * time.Millisecond

// report is what a run found.
type report struct {
	jobs                                int
	kills, stalls, partitions, restarts int
	lost, duplicated, stale             int
	detect, resume                      []time.Duration
	// detectUp is detect without the faults whose detection a server
	// restart delayed (the server was down between fault and loss).
	detectUp                         []time.Duration
	detectBy                         map[Kind][]time.Duration
	attempts, lostAttempts, spurious int
	fencedRefused, goneRefused       float64
	fencedKills                      int
	// taskExit is how long the last task processes took to go, once every
	// job had ended.
	taskExit time.Duration
	problems []string
	// notes are findings that break no invariant: losses no fault explains
	// (false positives of failure detection).
	notes []string
}

func (rep *report) problem(format string, args ...any) {
	rep.problems = append(rep.problems, fmt.Sprintf(format, args...))
}

// check runs every check of a run whose jobs have ended; it stops the
// agents and the server on the way.
func (r *run) check(ctx context.Context) *report {
	rep := &report{jobs: len(r.jobs), detectBy: map[Kind][]time.Duration{}}
	for _, err := range r.errs {
		rep.problem("harness: %v", err)
	}
	for _, ev := range r.events {
		switch ev.Kind {
		case Kill:
			rep.kills++
		case Stall:
			rep.stalls++
		case Partition:
			rep.partitions++
		case Restart:
			rep.restarts++
		}
	}

	// Processes left behind, with every agent still up.
	waitStart := time.Now()
	live, records := r.waitNoTasks(30 * time.Second)
	rep.taskExit = time.Since(waitStart)
	for _, l := range live {
		rep.problem("task process left behind: %s", l.what)
	}
	if records == 0 {
		rep.problem("no trainer recorded its process: the PID records are not being written")
	}

	// Results and checkpoint contents, through the API.
	c := r.srv.client()
	results := map[string]*fetched{}
	for _, j := range r.jobs {
		if j.id == "" {
			continue
		}
		f, err := fetch(ctx, c, j, filepath.Join(r.dir, "fetch", j.name))
		if err != nil {
			f = &fetched{err: err}
		}
		results[j.id] = f
	}
	r.srv.scrapeRefused(ctx)
	rep.fencedRefused, rep.goneRefused = r.srv.refusedTotal()

	if err := r.stopAgents(); err != nil {
		rep.problem("agents did not stop: %v", err)
	}
	for _, a := range r.agents {
		if left := dirEntries(filepath.Join(a.dir, "tasks")); len(left) > 0 {
			rep.problem("%s left task directories (decrypted data) behind after it stopped: %s", a.name, strings.Join(left, ", "))
		}
	}
	rep.fencedKills = countLines(r.agentLogs(), "attempt is no longer current; killing the task")

	r.srv.mu.Lock()
	r.srv.proc.signal(syscall.SIGTERM)
	err := r.srv.proc.wait(60 * time.Second)
	r.srv.mu.Unlock()
	if err != nil {
		rep.problem("server did not stop: %v", err)
	}
	st, raw, err := openCopy(ctx, r.srv.dir, filepath.Join(r.dir, "check"))
	if err != nil {
		rep.problem("opening the database: %v", err)
		return rep
	}
	defer st.Close()
	defer raw.Close()
	for _, j := range r.jobs {
		r.checkJob(ctx, rep, st, raw, j, results[j.id])
	}
	r.checkAcknowledged(ctx, rep, st, raw)
	return rep
}

var (
	committedRE = regexp.MustCompile(`msg="checkpoint committed" job=(\S+) attempt=(\S+) rank=\d+ version=(\d+)`)
	uploadedRE  = regexp.MustCompile(`msg="outputs uploaded" job=(\S+) attempt=(\S+) `)
)

// checkAcknowledged checks that every checkpoint and every set of outputs
// the server acknowledged, as the agents' logs say, is in the database:
// a server killed with SIGKILL must not lose what it said it had stored.
func (r *run) checkAcknowledged(ctx context.Context, rep *report, st store.Store, raw *sql.DB) {
	versions := map[string]map[int]string{} // job -> version -> attempt
	for _, path := range r.agentLogs() {
		b, err := os.ReadFile(path)
		if err != nil {
			rep.problem("reading %s: %v", path, err)
			continue
		}
		for _, m := range committedRE.FindAllStringSubmatch(string(b), -1) {
			job, attempt := m[1], m[2]
			v, _ := strconv.Atoi(m[3])
			if versions[job] == nil {
				cks, err := st.CheckpointList(ctx, job)
				if err != nil {
					rep.problem("%s: checkpoints: %v", job, err)
					continue
				}
				versions[job] = map[int]string{}
				for _, ck := range cks {
					versions[job][ck.Version] = ck.AttemptID
				}
			}
			if got, ok := versions[job][v]; !ok || got != attempt {
				rep.problem("%s: checkpoint v%d, acknowledged to attempt %s, is not in the database (it holds %q): a committed checkpoint was lost",
					job, v, attempt, got)
			}
		}
		for _, m := range uploadedRE.FindAllStringSubmatch(string(b), -1) {
			var one int
			err := raw.QueryRowContext(ctx, `SELECT 1 FROM artifacts WHERE job_id = ? AND attempt_id = ?`, m[1], m[2]).Scan(&one)
			if err != nil {
				rep.problem("%s: outputs acknowledged to attempt %s are not in the database: %v", m[1], m[2], err)
			}
		}
	}
}

// waitNoTasks waits until no recorded task process is alive, or the
// timeout passes, and returns those still alive and the number of records.
func (r *run) waitNoTasks(timeout time.Duration) ([]liveProc, int) {
	end := time.Now().Add(timeout)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		live, n, err := livePIDs(r.pidDir)
		if err != nil {
			return []liveProc{{what: err.Error()}}, n
		}
		if len(live) == 0 || time.Now().After(end) {
			return live, n
		}
		<-tick.C
	}
}

// fetched is what the API gave back for a job.
type fetched struct {
	result string
	steps  map[int]int // checkpoint version -> the step inside
	err    error
}

// fetch downloads and decrypts a job's outputs and every checkpoint
// version it committed.
func fetch(ctx context.Context, c *client.Client, j *job, dir string) (*fetched, error) {
	acc, err := c.Artifacts(ctx, j.id)
	if err != nil {
		return nil, fmt.Errorf("outputs: %w", err)
	}
	s, err := data.NewSealer(acc.ObjectID, acc.DataKey)
	if err != nil {
		return nil, err
	}
	out := filepath.Join(dir, "out")
	if _, err := data.Pull(ctx, c, s, acc.ObjectID, acc.Artifact.Manifest, out, nil); err != nil {
		return nil, fmt.Errorf("outputs: %w", err)
	}
	b, err := os.ReadFile(filepath.Join(out, "result"))
	if err != nil {
		return nil, err
	}
	f := &fetched{result: strings.TrimSpace(string(b)), steps: map[int]int{}}
	cks, err := c.Checkpoints(ctx, j.id)
	if err != nil {
		return nil, fmt.Errorf("checkpoints: %w", err)
	}
	for _, ck := range cks {
		d := filepath.Join(dir, "ckpt", strconv.Itoa(ck.Version))
		if _, err := data.Pull(ctx, c, s, acc.ObjectID, ck.Manifest, d, nil); err != nil {
			return nil, fmt.Errorf("checkpoint v%d: %w", ck.Version, err)
		}
		b, err := os.ReadFile(filepath.Join(d, "state.json"))
		if errors.Is(err, os.ErrNotExist) {
			// The trainer's first checkpoint was being written (only its
			// temporary file was there): to the trainer, no checkpoint.
			f.steps[ck.Version] = 0
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("checkpoint v%d: %w", ck.Version, err)
		}
		var state struct {
			Job  string `json:"job"`
			Step int    `json:"step"`
		}
		if err := json.Unmarshal(b, &state); err != nil {
			return nil, fmt.Errorf("checkpoint v%d: %w", ck.Version, err)
		}
		if state.Job != j.id {
			return nil, fmt.Errorf("checkpoint v%d holds job %s's state", ck.Version, state.Job)
		}
		f.steps[ck.Version] = state.Step
	}
	return f, nil
}

// openCopy copies the server's database aside and opens the copy, with the
// store and, for what the store does not list (artifacts per attempt),
// read-only SQL.
func openCopy(ctx context.Context, dataDir, dir string) (*sqlite.Store, *sql.DB, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, err
	}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := copyFile(filepath.Join(dataDir, "lode.db"+suffix), filepath.Join(dir, "lode.db"+suffix)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, nil, err
		}
	}
	path := filepath.Join(dir, "lode.db")
	st, err := sqlite.Open(ctx, path)
	if err != nil {
		return nil, nil, err
	}
	raw, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	return st, raw, nil
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

var startRE = regexp.MustCompile(`(?m)^(?:start step 0|resumed from step (\d+)) attempt=(\d+)$`)

// row is a write an attempt made, as the database holds it.
type row struct {
	what    string // "log 12", "checkpoint v3", ...
	attempt string
	order   int64 // sequence or version number; 0 where there is none
	at      time.Time
}

// checkJob checks one job's invariants and adds its figures to rep.
func (r *run) checkJob(ctx context.Context, rep *report, st store.Store, raw *sql.DB, j *job, f *fetched) {
	if j.id == "" {
		rep.lost++
		rep.problem("%s: never submitted", j.name)
		return
	}
	stored, err := st.JobGet(ctx, j.id)
	if err != nil {
		rep.lost++
		rep.problem("%s (%s): %v", j.name, j.id, err)
		return
	}
	attempts, err := st.AttemptListByJob(ctx, j.id)
	if err != nil {
		rep.problem("%s: attempts: %v", j.id, err)
		return
	}
	rep.attempts += len(attempts)
	bySeq, byID := map[int]*store.Attempt{}, map[string]*store.Attempt{}
	succeeded := 0
	for _, a := range attempts {
		bySeq[a.Seq], byID[a.ID] = a, a
		if a.State == core.AttemptSucceeded {
			succeeded++
		}
	}

	// 1. Exactly once.
	switch {
	case stored.State != core.JobSucceeded:
		rep.lost++
		rep.problem("%s (%s): ended %s (%s) after %d attempts", j.id, j.name, stored.State, stored.Reason, len(attempts))
	case succeeded > 1:
		rep.duplicated++
		rep.problem("%s: %d attempts succeeded", j.id, succeeded)
	case succeeded == 0 || attempts[len(attempts)-1].State != core.AttemptSucceeded:
		rep.lost++
		rep.problem("%s: succeeded, but its last attempt is %s", j.id, attempts[len(attempts)-1].State)
	case f == nil:
		rep.lost++
		rep.problem("%s: succeeded, but its outputs were not fetched", j.id)
	case f.err != nil:
		rep.lost++
		rep.problem("%s: succeeded, but its outputs cannot be fetched: %v", j.id, f.err)
	case f.result != j.expected():
		rep.lost++
		rep.problem("%s: result %q, want %q (the sum of 1..%d)", j.id, f.result, j.expected(), j.target)
	}

	// 2. Checkpoints.
	cks, err := st.CheckpointList(ctx, j.id)
	if err != nil {
		rep.problem("%s: checkpoints: %v", j.id, err)
		return
	}
	slices.SortFunc(cks, func(a, b *store.Checkpoint) int { return a.Version - b.Version })
	if f != nil && f.err == nil {
		prev := 0
		for i, ck := range cks {
			step, ok := f.steps[ck.Version]
			if !ok {
				rep.problem("%s: checkpoint v%d is in the database but not listed by the API", j.id, ck.Version)
				continue
			}
			if i > 0 && step < prev {
				rep.problem("%s: checkpoint v%d holds step %d, behind v%d's step %d: a checkpoint went backwards", j.id, ck.Version, step, cks[i-1].Version, prev)
			}
			prev = step
		}
		if stored.State == core.JobSucceeded && prev != j.target {
			rep.problem("%s: its last checkpoint holds step %d, want the target %d", j.id, prev, j.target)
		}
	}
	logs, err := st.LogList(ctx, &store.LogListParams{JobID: j.id})
	if err != nil {
		rep.problem("%s: logs: %v", j.id, err)
		return
	}
	if f != nil && f.err == nil {
		for _, l := range logs {
			for _, m := range startRE.FindAllStringSubmatch(string(l.Data), -1) {
				a := byID[l.AttemptID]
				if seq, _ := strconv.Atoi(m[2]); a != nil && seq != a.Seq {
					rep.problem("%s: attempt %s (seq %d) ran with LODE_ATTEMPT=%d", j.id, a.ID, a.Seq, seq)
				}
				from, _ := strconv.Atoi(m[1])
				want := 0
				for _, ck := range cks {
					if ca := byID[ck.AttemptID]; ca != nil && a != nil && ca.Seq < a.Seq {
						want = f.steps[ck.Version]
					}
				}
				if a != nil && from != want {
					rep.problem("%s: attempt %d resumed from step %d, but the newest checkpoint committed before it holds step %d", j.id, a.Seq, from, want)
				}
			}
		}
	}

	// 3. Stale writes.
	var rows []row
	for _, l := range logs {
		rows = append(rows, row{what: fmt.Sprintf("log #%d", l.Seq), attempt: l.AttemptID, order: l.Seq, at: l.Time})
	}
	metrics, err := st.MetricList(ctx, &store.MetricListParams{JobID: j.id})
	if err != nil {
		rep.problem("%s: metrics: %v", j.id, err)
		return
	}
	for _, m := range metrics {
		rows = append(rows, row{what: fmt.Sprintf("metric #%d", m.Seq), attempt: m.AttemptID, order: m.Seq, at: m.Time})
	}
	for _, ck := range cks {
		rows = append(rows, row{what: fmt.Sprintf("checkpoint v%d", ck.Version), attempt: ck.AttemptID, order: int64(ck.Version), at: ck.CreatedAt})
	}
	arts, err := artifacts(ctx, raw, j.id)
	if err != nil {
		rep.problem("%s: artifacts: %v", j.id, err)
		return
	}
	rows = append(rows, arts...)
	for _, a := range attempts {
		for _, t := range a.Tasks {
			if !t.EndedAt.IsZero() {
				rows = append(rows, row{what: fmt.Sprintf("end of task rank %d (%s)", t.Rank, t.State), attempt: a.ID, at: t.EndedAt})
			}
		}
	}
	rep.stale += staleRows(rep, j.id, rows, byID)

	// Detection and resume times.
	for _, a := range attempts {
		if a.State != core.AttemptLost {
			continue
		}
		rep.lostAttempts++
		if next := bySeq[a.Seq+1]; next != nil && !next.StartedAt.IsZero() {
			rep.resume = append(rep.resume, next.StartedAt.Sub(a.EndedAt))
		}
		if len(a.Tasks) == 0 {
			continue
		}
		node, err := st.NodeGet(ctx, a.Tasks[0].NodeID)
		if err != nil {
			rep.problem("%s: node of attempt %d: %v", j.id, a.Seq, err)
			continue
		}
		if kind, d, ok := r.cause(node, a.EndedAt); ok {
			rep.detectBy[kind] = append(rep.detectBy[kind], d)
			if kind != Restart {
				rep.detect = append(rep.detect, d)
				if !r.serverDown(a.EndedAt.Add(-d), a.EndedAt) {
					rep.detectUp = append(rep.detectUp, d)
				}
			} else {
				rep.notes = append(rep.notes, fmt.Sprintf("%s: attempt %d on %s, which no fault hit, was lost %v after a server restart (%s)",
					j.id, a.Seq, node.Name, d.Round(time.Millisecond), a.Reason))
			}
		} else {
			rep.spurious++
			rep.notes = append(rep.notes, fmt.Sprintf("%s: attempt %d on %s was lost at %s with no fault to explain it (%s)",
				j.id, a.Seq, node.Name, a.EndedAt.Format("15:04:05.000"), a.Reason))
		}
	}
}

// staleRows counts the rows written for an attempt after it stopped being
// current, and records each as a problem.
func staleRows(rep *report, jobID string, rows []row, byID map[string]*store.Attempt) int {
	// The smallest sequence (or version) any later attempt wrote, per kind.
	kind := func(w row) string { return strings.Fields(w.what)[0] }
	firstOf := map[string]map[int]int64{} // kind -> attempt seq -> smallest order
	for _, w := range rows {
		a := byID[w.attempt]
		if a == nil || w.order == 0 {
			continue
		}
		k := kind(w)
		if firstOf[k] == nil {
			firstOf[k] = map[int]int64{}
		}
		if cur, ok := firstOf[k][a.Seq]; !ok || w.order < cur {
			firstOf[k][a.Seq] = w.order
		}
	}
	n := 0
	for _, w := range rows {
		a := byID[w.attempt]
		if a == nil {
			rep.problem("%s: %s belongs to attempt %s, which the job does not have", jobID, w.what, w.attempt)
			n++
			continue
		}
		if w.order != 0 {
			for seq, first := range firstOf[kind(w)] {
				if seq > a.Seq && w.order > first {
					rep.problem("%s: %s of attempt %d was written after attempt %d had written (#%d): a fenced write was accepted",
						jobID, w.what, a.Seq, seq, first)
					n++
					break
				}
			}
		}
		if !a.EndedAt.IsZero() && w.at.Sub(a.EndedAt) > lateSlack {
			rep.problem("%s: %s of attempt %d is stamped %s, %v after the attempt ended %s: a fenced write was accepted",
				jobID, w.what, a.Seq, w.at.Format("15:04:05.000"), w.at.Sub(a.EndedAt), a.State)
			n++
		}
	}
	return n
}

// artifacts lists the outputs every attempt of a job committed.
func artifacts(ctx context.Context, db *sql.DB, jobID string) ([]row, error) {
	rs, err := db.QueryContext(ctx, `SELECT attempt_id, created_at FROM artifacts WHERE job_id = ?`, jobID)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var out []row
	for rs.Next() {
		var w row
		var ms int64
		if err := rs.Scan(&w.attempt, &ms); err != nil {
			return nil, err
		}
		w.what, w.at = "outputs", time.UnixMilli(ms).UTC()
		out = append(out, w)
	}
	return out, rs.Err()
}

// cause finds the fault that made an attempt on node n get lost at ended,
// and returns its kind and how long detection took. It is the newest
// fault (a kill, stall or partition) that hit the agent while n was its
// node: the node the agent had logged joining as when the fault hit, or
// (for a fault that hit while a join was on its way, before the agent could
// log it) any fault on the agent from n's registration on, if the loss came
// within the fault's length, plus 5 s, plus any server downtime, after it.
// Failing that, a server restart whose downtime the loss closely followed.
func (r *run) cause(n *store.Node, ended time.Time) (Kind, time.Duration, bool) {
	var best *event
	for i := range r.events {
		ev := &r.events[i]
		if ev.Kind == Restart || ev.at.IsZero() || ev.at.After(ended) || r.agents[ev.Agent].name != n.Name {
			continue
		}
		hit := ev.node == n.ID
		if !hit && ev.node != "" && !n.RegisteredAt.After(ev.at.Add(500*time.Millisecond)) {
			bound := ev.at.Add(ev.For + 5*time.Second + r.downtime(ev.at, ended))
			hit = !ended.After(bound)
		}
		if hit && (best == nil || ev.at.After(best.at)) {
			best = ev
		}
	}
	if best != nil {
		return best.Kind, ended.Sub(best.at), true
	}
	for i := range r.events {
		ev := &r.events[i]
		if ev.Kind == Restart && !ev.at.After(ended) && ended.Sub(ev.at) < ev.For+10*time.Second {
			return Restart, ended.Sub(ev.at), true
		}
	}
	return 0, 0, false
}

// downtime is how long the server was down between from and to.
func (r *run) downtime(from, to time.Time) time.Duration {
	var d time.Duration
	for _, ev := range r.events {
		if ev.Kind != Restart {
			continue
		}
		lo, hi := maxTime(ev.at, from), minTime(ev.back, to)
		if hi.After(lo) {
			d += hi.Sub(lo)
		}
	}
	return d
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// serverDown reports whether the server was down at some time between
// from and to.
func (r *run) serverDown(from, to time.Time) bool { return r.downtime(from, to) > 0 }

// print writes the summary line and fails the test on any broken
// invariant.
func (rep *report) print(t *testing.T, r *run) {
	t.Helper()
	secs := func(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', 2, 64) + "s" }
	var by []string
	for _, k := range []Kind{Kill, Stall, Partition, Restart} {
		if ds := rep.detectBy[k]; len(ds) > 0 {
			by = append(by, fmt.Sprintf("%s:n=%d,p50=%s,p99=%s", k, len(ds), secs(Percentile(ds, 50)), secs(Percentile(ds, 99))))
		}
	}
	r.probe.mu.Lock()
	probe := fmt.Sprintf("heartbeats=%d rtt_p50=%s rtt_p99=%s rtt_max=%s@%s lost=%d", len(r.probe.rtts),
		secs(Percentile(r.probe.rtts, 50)), secs(Percentile(r.probe.rtts, 99)), secs(Percentile(r.probe.rtts, 100)),
		r.probe.slowest.Format("15:04:05.000"), len(r.probe.lost))
	for _, at := range r.probe.lost {
		rep.notes = append(rep.notes, fmt.Sprintf("the probe node, which no fault touches, was declared lost at %s", at.Format("15:04:05.000")))
	}
	r.probe.mu.Unlock()
	fmt.Printf("chaos: detail seed=%d attempts=%d lost_attempts=%d spurious_lost=%d fenced_refused>=%.0f node_gone_refused>=%.0f fenced_kills=%d task_exit=%s detect_server_up_p50=%s detect_server_up_p99=%s detect_by=[%s] probe=[%s]\n",
		r.cfg.Seed, rep.attempts, rep.lostAttempts, rep.spurious, rep.fencedRefused, rep.goneRefused, rep.fencedKills, secs(rep.taskExit),
		secs(Percentile(rep.detectUp, 50)), secs(Percentile(rep.detectUp, 99)), strings.Join(by, " "), probe)
	fmt.Printf("chaos: seed=%d jobs=%d agent_kills=%d stalls=%d partitions=%d server_restarts=%d lost=%d duplicated=%d stale_writes=%d detect_p50=%s detect_p99=%s resume_p50=%s resume_p99=%s\n",
		r.cfg.Seed, rep.jobs, rep.kills, rep.stalls, rep.partitions, rep.restarts, rep.lost, rep.duplicated, rep.stale,
		secs(Percentile(rep.detect, 50)), secs(Percentile(rep.detect, 99)), secs(Percentile(rep.resume, 50)), secs(Percentile(rep.resume, 99)))
	want := r.cfg.Faults
	if rep.kills != want.Kills || rep.stalls != want.Stalls || rep.partitions != want.Partitions || rep.restarts != want.Restarts {
		rep.problem("faults injected: %d kills, %d stalls, %d partitions, %d restarts; the schedule had %+v",
			rep.kills, rep.stalls, rep.partitions, rep.restarts, want)
	}
	for _, n := range rep.notes {
		t.Log(n)
	}
	if len(rep.problems) > 0 {
		const show = 60
		for i, p := range rep.problems {
			if i == show {
				t.Errorf("... and %d more", len(rep.problems)-show)
				break
			}
			t.Error(p)
		}
		t.Errorf("chaos: %d invariant violations; logs and data are in %s (set CHAOS_DIR to keep them)", len(rep.problems), r.dir)
	}
}
