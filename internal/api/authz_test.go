package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"lode.dev/lode/internal/client"
	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/data"
	"lode.dev/lode/internal/spec"
	"lode.dev/lode/internal/store"
	"lode.dev/lode/internal/wire"
)

// The callers of the matrix, in the columns' order of docs/authorization.md.
var matrixCallers = []string{"anonymous", "viewer", "member", "admin", "foreign viewer", "foreign member", "foreign admin", "administrator"}

// readMatrix reads the documented table: for each "METHOD PATH", the
// expected outcome for each caller.
func readMatrix(t *testing.T) map[string][]string {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "docs", "authorization.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if len(cells) != 1+len(matrixCallers) {
			t.Fatalf("docs/authorization.md: row %q has %d cells, want %d", line, len(cells), 1+len(matrixCallers))
		}
		out[strings.Trim(cells[0], "`")] = cells[1:]
	}
	return out
}

// matrixEnv is a server with two projects and a user of each role in each.
type matrixEnv struct {
	*env
	ctx     context.Context
	tokens  map[string]string // caller → token ("" for anonymous)
	job     string            // a job of project alpha
	dataset *store.Dataset    // a dataset of alpha
	node    string
	joinTok string
	n       int // a counter for unique names
}

func newMatrixEnv(t *testing.T) *matrixEnv {
	e := &matrixEnv{env: newEnv(t), ctx: context.Background(), tokens: map[string]string{"administrator": ""}}
	e.tokens["administrator"] = e.admin
	for _, p := range []string{"alpha", "beta"} {
		if err := e.store.ProjectPut(e.ctx, &store.Project{Name: p}); err != nil {
			t.Fatal(err)
		}
	}
	for _, role := range []core.Role{core.RoleViewer, core.RoleMember, core.RoleAdmin} {
		for project, prefix := range map[string]string{"alpha": "", "beta": "foreign "} {
			name := strings.ReplaceAll(prefix+string(role), " ", "-") + "-of-" + project
			e.tokens[prefix+string(role)] = e.user(name, false)
			u, _ := e.store.UserGetByName(e.ctx, name)
			if err := e.store.MemberPut(e.ctx, &store.Member{Project: project, UserID: u.ID, Role: role}); err != nil {
				t.Fatal(err)
			}
		}
	}
	e.user("victim", false)

	c, err := client.New(e.http.URL)
	if err != nil {
		t.Fatal(err)
	}
	c = c.WithToken(e.admin)
	// A dataset of alpha, pushed and committed as a member would.
	k, err := c.CreateObject(e.ctx, &wire.CreateObject{Kind: store.ObjectDataset, Project: "alpha", Name: "ds"})
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "x.txt"), []byte("alpha's data"), 0o600)
	sealer, err := data.NewSealer(k.ObjectID, k.DataKey)
	if err != nil {
		t.Fatal(err)
	}
	res, err := data.Push(e.ctx, c, sealer, k.ObjectID, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	if e.dataset, err = c.CommitDataset(e.ctx, &wire.CommitDataset{Project: "alpha", Name: "ds", ObjectID: k.ObjectID,
		Manifest: res.Manifest, Files: res.Files, Bytes: res.Bytes}); err != nil {
		t.Fatal(err)
	}
	d, err := c.SubmitJob(e.ctx, &wire.SubmitJob{Spec: e.alphaSpec()})
	if err != nil {
		t.Fatal(err)
	}
	e.job = d.ID
	e.node, _ = e.join()
	e.joinTok = "tok"
	// The job runs and ends, so that alpha has costs to list (or hide).
	a, err := e.store.AttemptCreate(e.ctx, &store.AttemptCreateParams{JobID: d.ID, PoolID: e.pool.ID, NodeIDs: []string{e.node}, Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range []core.TaskState{core.TaskRunning, core.TaskExited} {
		if _, err := e.store.TaskUpdate(e.ctx, &store.TaskUpdateParams{Fence: store.Fence{AttemptID: a.ID, Token: a.FencingToken},
			State: st, Now: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func (e *matrixEnv) alphaSpec() spec.Job {
	s := validSpec()
	s.Project = "alpha"
	return s
}

// request returns the path and body that exercise a route against
// project alpha's resources, well formed, so that only the caller decides
// whether it is refused.
func (e *matrixEnv) request(t *testing.T, method, pattern string) (string, any) {
	e.n++
	uniq := fmt.Sprintf("x%d", e.n)
	addr := strings.Repeat("a", 64)
	path := strings.NewReplacer(
		"{id}", map[bool]string{true: e.dataset.ObjectID, false: e.job}[strings.HasPrefix(pattern, "/v1/objects/")],
		"{addr}", addr, "{project}", "alpha", "{user}", "victim", "{attempt}", "att-nope", "{rank}", "0",
	).Replace(pattern)
	switch {
	case strings.HasPrefix(pattern, "/v1/objects/") && strings.Contains(pattern, "{name}"):
		path = strings.Replace(path, "{name}", e.dataset.Manifest, 1)
	case strings.HasPrefix(pattern, "/v1/pools/{name}"):
		path = strings.Replace(path, "{name}", "nope", 1)
	case strings.HasPrefix(pattern, "/v1/projects/{name}") || strings.HasPrefix(pattern, "/v1/datasets/"):
		path = strings.Replace(path, "{name}", "alpha", 1)
		if strings.HasPrefix(pattern, "/v1/datasets/") {
			path = "/v1/datasets/alpha/nope"
		}
	case strings.HasPrefix(pattern, "/v1/nodes/"):
		path = strings.Replace(pattern, "{id}", "node-nope", 1)
	case pattern == "/v1/tokens/{id}":
		// Another user's token, made afresh each time.
		u, _ := e.store.UserGetByName(e.ctx, "victim")
		id, _, hash := NewToken()
		if err := e.store.TokenCreate(e.ctx, &store.Token{ID: id, UserID: u.ID, Hash: hash}); err != nil {
			t.Fatal(err)
		}
		path = "/v1/tokens/" + id
	}
	key := method + " " + pattern
	switch key {
	case "POST /v1/jobs":
		return path, wire.SubmitJob{Spec: e.alphaSpec()}
	case "POST /v1/dry-run":
		return path, wire.DryRun{Spec: e.alphaSpec()}
	case "POST /v1/pools":
		return path, wire.PoolSpec{Name: "pool-" + uniq}
	case "PATCH /v1/pools/{name}":
		state := "active"
		return path, wire.PoolSpec{State: &state}
	case "PUT /v1/projects/{name}":
		return path, wire.ProjectSpec{Budget: 10, Weight: 1}
	case "POST /v1/objects":
		return path, wire.CreateObject{Kind: store.ObjectWorkdir, Project: "alpha"}
	case "POST /v1/objects/{id}/missing":
		return path, wire.MissingChunks{Addrs: []string{addr}}
	case "PUT /v1/objects/{id}/chunks/{addr}", "PUT /v1/objects/{id}/manifests/{name}":
		return path, []byte("sealed bytes")
	case "POST /v1/datasets":
		d := e.dataset
		return path, wire.CommitDataset{Project: "alpha", Name: d.Name, ObjectID: d.ObjectID, Manifest: d.Manifest, Files: d.Files, Bytes: d.Bytes}
	case "POST /v1/users":
		return path, wire.CreateUser{Name: "user-" + uniq}
	case "POST /v1/tokens":
		return path, wire.CreateToken{Name: uniq}
	case "PUT /v1/projects/{name}/members/{user}":
		return path, wire.MemberSpec{Role: core.RoleViewer}
	case "POST /v1/agent/join":
		return path, wire.Join{JoinToken: e.joinTok, Name: "n-" + uniq, MilliCPUs: 1000, MemoryBytes: 1 << 30}
	case "POST /v1/agent/heartbeats":
		return path, wire.Heartbeat{}
	case "POST /v1/agent/attempts/{attempt}/ranks/{rank}/status":
		return path, wire.TaskStatus{State: core.TaskRunning}
	case "POST /v1/agent/attempts/{attempt}/ranks/{rank}/logs":
		return path, wire.TaskLog{Stream: store.Stdout, Data: []byte("x")}
	case "POST /v1/agent/attempts/{attempt}/ranks/{rank}/metrics":
		return path, wire.TaskMetrics{Lines: []json.RawMessage{json.RawMessage(`{}`)}}
	case "POST /v1/agent/attempts/{attempt}/checkpoints", "POST /v1/agent/attempts/{attempt}/artifacts":
		return path, wire.Commit{Manifest: "m"}
	}
	return path, nil
}

// listings are the routes whose answers are filtered to what the caller
// may view.
var listings = map[string]bool{"GET /v1/jobs": true, "GET /v1/projects": true, "GET /v1/cost": true, "GET /v1/datasets": true}

// seesAlpha reports whether a listing's answer holds anything of project
// alpha.
func seesAlpha(body []byte) bool {
	return bytes.Contains(body, []byte(`"alpha"`))
}

// TestAuthorizationMatrix makes every request of the API as every kind of
// caller and checks the outcome against docs/authorization.md: every route
// must have a row, every row a route.
func TestAuthorizationMatrix(t *testing.T) {
	e := newMatrixEnv(t)
	want := readMatrix(t)
	for _, rt := range e.srv.routes {
		key := rt.method + " " + rt.path
		row, ok := want[key]
		if !ok {
			t.Errorf("%s has no row in docs/authorization.md", key)
			continue
		}
		delete(want, key)
		for i, who := range matrixCallers {
			t.Run(key+"/"+who, func(t *testing.T) {
				e.t = t
				path, body := e.request(t, rt.method, rt.path)
				header := map[string]string{anonymous: "yes"}
				if tok := e.tokens[who]; tok != "" {
					header = as(tok)
				}
				status, out := e.do(rt.method, path, body, header)
				refused := status == 401 || status == 403
				switch row[i] {
				case "yes":
					if refused {
						t.Errorf("refused (%d), the table says yes: %s", status, out)
					}
				case "no":
					if !refused {
						t.Errorf("answered %d, the table says no: %.300s", status, out)
					}
				case "filtered":
					if refused || status != 200 || seesAlpha(out) {
						t.Errorf("answered %d, the table says filtered (200, nothing of project alpha): %.300s", status, out)
					}
				default:
					t.Fatalf("docs/authorization.md: %s, %s: unknown outcome %q", key, who, row[i])
				}
				// Where the caller may view alpha, a listing must show it:
				// filtering must not hide what it should not.
				if row[i] == "yes" && listings[key] && !seesAlpha(out) {
					t.Errorf("a listing for a caller who may view project alpha shows nothing of it: %.300s", out)
				}
			})
		}
	}
	for key := range want {
		t.Errorf("docs/authorization.md has a row for %s, which is no route", key)
	}
}
