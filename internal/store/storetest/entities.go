package storetest

import (
	"testing"
	"time"

	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/spec"
	"lode.dev/lode/internal/store"
)

func testPools(t *testing.T, open func(t *testing.T) store.Store) {
	f := setup(t, open)
	rigs := f.pool(func(p *store.Pool) { p.Name = "rigs-eu" })
	aws := f.pool(func(p *store.Pool) { p.Name, p.Driver = "aws", "kubernetes" })
	slurm := f.pool(func(p *store.Pool) { p.Name, p.Driver, p.State = "slurm", "slurm", "" })
	if slurm.State != store.PoolActive {
		t.Errorf("PoolCreate with no state: state %q, want %q", slurm.State, store.PoolActive)
	}

	got, err := f.s.PoolGet(f.ctx, rigs.ID)
	noErr(t, "PoolGet", err)
	diff(t, "PoolGet", rigs, got)
	got, err = f.s.PoolGetByName(f.ctx, "aws")
	noErr(t, "PoolGetByName", err)
	diff(t, "PoolGetByName", aws, got)
	list, err := f.s.PoolList(f.ctx)
	noErr(t, "PoolList", err)
	byID := func(p *store.Pool) string { return p.ID }
	diff(t, "PoolList", sortedBy([]*store.Pool{rigs, aws, slurm}, byID), sortedBy(list, byID))

	conflicts := []struct {
		name string
		pool store.Pool
	}{
		{"same ID", store.Pool{ID: rigs.ID, Name: "other"}},
		{"same name", store.Pool{ID: core.NewID("pool"), Name: rigs.Name}},
	}
	for _, c := range conflicts {
		p := c.pool
		p.CreatedAt = at(1)
		wantErr(t, "PoolCreate with the "+c.name, f.s.PoolCreate(f.ctx, &p), store.ErrConflict)
	}

	missing := []struct {
		name string
		get  func() (*store.Pool, error)
	}{
		{"PoolGet", func() (*store.Pool, error) { return f.s.PoolGet(f.ctx, "pool-nope") }},
		{"PoolGetByName", func() (*store.Pool, error) { return f.s.PoolGetByName(f.ctx, "nope") }},
	}
	for _, m := range missing {
		_, err := m.get()
		wantErr(t, m.name, err, store.ErrNotFound)
	}
}

func testNodes(t *testing.T, open func(t *testing.T) store.Store) {
	f := setup(t, open)
	p1, p2 := f.pool(), f.pool()
	a := f.node(p1, gpus("rtx3090", "rtx4090"), func(n *store.Node) { n.Labels = map[string]string{"owner": "ana", "rack": "2"} })
	b := f.node(p1, func(n *store.Node) { n.RegisteredAt = at(1) })
	c := f.node(p2, gpus(), func(n *store.Node) { n.Labels, n.RegisteredAt = nil, at(2) })

	got := f.getNode(a.ID)
	diff(t, "NodeGet", a, got)

	noErr(t, "NodeLeave", f.s.NodeLeave(f.ctx, &store.NodeLeaveParams{NodeID: b.ID, Now: at(5)}))
	b.State, b.LastHeartbeatAt = store.NodeLeft, at(5) // a node that leaves was last heard from then

	byID := func(n *store.Node) string { return n.ID }
	for _, tc := range []struct {
		name   string
		params store.NodeListParams
		want   []*store.Node
	}{
		{"all", store.NodeListParams{}, []*store.Node{a, b, c}},
		{"pool", store.NodeListParams{PoolID: p1.ID}, []*store.Node{a, b}},
		{"state", store.NodeListParams{State: store.NodeReady}, []*store.Node{a, c}},
		{"pool and state", store.NodeListParams{PoolID: p1.ID, State: store.NodeLeft}, []*store.Node{b}},
		{"no match", store.NodeListParams{PoolID: "pool-nope"}, nil},
	} {
		list, err := f.s.NodeList(f.ctx, &tc.params)
		noErr(t, "NodeList "+tc.name, err)
		diff(t, "NodeList "+tc.name, sortedBy(tc.want, byID), sortedBy(list, byID))
	}

	dup := *a
	wantErr(t, "NodeCreate with the same ID", f.s.NodeCreate(f.ctx, &dup), store.ErrConflict)
	orphan := *a
	orphan.ID, orphan.PoolID = core.NewID("node"), "pool-nope"
	wantErr(t, "NodeCreate in a missing pool", f.s.NodeCreate(f.ctx, &orphan), store.ErrNotFound)
	_, err := f.s.NodeGet(f.ctx, "node-nope")
	wantErr(t, "NodeGet missing", err, store.ErrNotFound)
}

func testNodeHeartbeat(t *testing.T, open func(t *testing.T) store.Store) {
	f := setup(t, open)
	p := f.pool()
	n := f.node(p, lease(30))

	got, err := f.s.NodeHeartbeat(f.ctx, &store.NodeHeartbeatParams{NodeID: n.ID, Now: at(10), LeaseExpiresAt: at(40)})
	noErr(t, "NodeHeartbeat", err)
	want := *n
	want.LastHeartbeatAt, want.LeaseExpiresAt = at(10), at(40)
	diff(t, "NodeHeartbeat", &want, got)
	diff(t, "NodeGet after NodeHeartbeat", &want, f.getNode(n.ID))

	// The lease was extended: an expiry at the old end finds nothing.
	lost, err := f.s.NodeExpireLeases(f.ctx, &store.NodeExpireLeasesParams{Now: at(35)})
	noErr(t, "NodeExpireLeases", err)
	diff(t, "NodeExpireLeases before the lease ends", []*store.Node(nil), lost)

	_, err = f.s.NodeHeartbeat(f.ctx, &store.NodeHeartbeatParams{NodeID: "node-nope", Now: at(11), LeaseExpiresAt: at(41)})
	wantErr(t, "NodeHeartbeat of a missing node", err, store.ErrNotFound)

	lost, err = f.s.NodeExpireLeases(f.ctx, &store.NodeExpireLeasesParams{Now: at(41)})
	noErr(t, "NodeExpireLeases", err)
	want.State = store.NodeLost
	diff(t, "NodeExpireLeases", []*store.Node{&want}, lost)
	_, err = f.s.NodeHeartbeat(f.ctx, &store.NodeHeartbeatParams{NodeID: n.ID, Now: at(42), LeaseExpiresAt: at(72)})
	wantErr(t, "NodeHeartbeat of a lost node", err, store.ErrNodeGone)
	diff(t, "NodeGet after a refused heartbeat", &want, f.getNode(n.ID))
	wantErr(t, "NodeLeave of a lost node", f.s.NodeLeave(f.ctx, &store.NodeLeaveParams{NodeID: n.ID, Now: at(43)}), store.ErrNodeGone)

	left := f.node(p)
	noErr(t, "NodeLeave", f.s.NodeLeave(f.ctx, &store.NodeLeaveParams{NodeID: left.ID, Now: at(50)}))
	_, err = f.s.NodeHeartbeat(f.ctx, &store.NodeHeartbeatParams{NodeID: left.ID, Now: at(51), LeaseExpiresAt: at(81)})
	wantErr(t, "NodeHeartbeat of a node that left", err, store.ErrNodeGone)
	wantErr(t, "NodeLeave of a missing node", f.s.NodeLeave(f.ctx, &store.NodeLeaveParams{NodeID: "node-nope", Now: at(52)}), store.ErrNotFound)
}

func testNodeSetCapacity(t *testing.T, open func(t *testing.T) store.Store) {
	f := setup(t, open)
	p := f.pool()
	n := f.node(p, lease(30))
	other := f.node(p, lease(30))
	gpus := []core.GPU{{Model: "h100", MemoryBytes: 80 * gib}}
	noErr(t, "NodeSetCapacity", f.s.NodeSetCapacity(f.ctx, &store.NodeSetCapacityParams{
		NodeID: n.ID, MilliCPUs: 2000, MemoryBytes: 3 * gib, GPUs: gpus}))
	want := *n
	want.MilliCPUs, want.MemoryBytes, want.GPUs = 2000, 3*gib, gpus
	diff(t, "NodeGet after NodeSetCapacity", &want, f.getNode(n.ID))
	diff(t, "another node after NodeSetCapacity", other, f.getNode(other.ID))

	noErr(t, "NodeSetCapacity to nothing", f.s.NodeSetCapacity(f.ctx, &store.NodeSetCapacityParams{NodeID: n.ID}))
	got := f.getNode(n.ID)
	if got.MilliCPUs != 0 || got.MemoryBytes != 0 || len(got.GPUs) != 0 {
		t.Errorf("after setting no capacity: %d millicpus, %d bytes, %v GPUs", got.MilliCPUs, got.MemoryBytes, got.GPUs)
	}

	wantErr(t, "NodeSetCapacity of a missing node",
		f.s.NodeSetCapacity(f.ctx, &store.NodeSetCapacityParams{NodeID: "node-nope"}), store.ErrNotFound)
	noErr(t, "NodeLeave", f.s.NodeLeave(f.ctx, &store.NodeLeaveParams{NodeID: other.ID, Now: at(5)}))
	wantErr(t, "NodeSetCapacity of a node that left",
		f.s.NodeSetCapacity(f.ctx, &store.NodeSetCapacityParams{NodeID: other.ID, MilliCPUs: 1}), store.ErrNodeGone)
}

func testJobs(t *testing.T, open func(t *testing.T) store.Store) {
	f := setup(t, open)
	full := f.job(func(j *store.Job) {
		j.Spec = spec.Job{
			Name:           "resnet-sweep-3",
			Project:        "vision",
			Command:        []string{"/bin/sh", "-c", "python train.py --lr 0.1"},
			Image:          "registry.example.com/vision/train:1.4",
			Workdir:        ".",
			Resources:      core.Resources{MilliCPUs: 8000, MemoryBytes: 32 * gib, GPUs: 1, GPUModels: []string{"rtx3090", "a100"}},
			Nodes:          2,
			Datasets:       []spec.Dataset{{Name: "coco-2017", Mount: "/data/coco"}},
			Checkpoint:     &spec.Checkpoint{Path: "/ckpt", Every: spec.Duration(10 * time.Minute)},
			Outputs:        "/out",
			Classification: core.ClassConfidential,
			Placement:      spec.Placement{Regions: []string{"eu"}, MinTrust: core.TierVerified, MaxPricePerHour: 2.5},
			Deadline:       spec.Duration(6 * time.Hour),
			Priority:       core.PriorityHigh,
			Retries:        core.RetryBudget{OnNodeLost: 10, OnError: 1},
			Env:            map[string]string{"SEED": "7"},
		}
		j.Name, j.Priority = "resnet-sweep-3", core.PriorityHigh
		j.WorkdirObject, j.WorkdirManifest = core.NewID("obj"), "manifest-w"
		j.Datasets = []store.DatasetRef{{Name: "coco-2017", Version: 3, Mount: "/data/coco", ObjectID: "obj-coco", Manifest: "manifest-c"}}
	})
	diff(t, "JobGet", full, f.getJob(full.ID))

	fresh := f.job(func(j *store.Job) { j.State = "" })
	if fresh.State != core.JobQueued {
		t.Errorf("JobCreate with no state: state %q, want %q", fresh.State, core.JobQueued)
	}
	diff(t, "JobGet of a job created without a state", fresh, f.getJob(fresh.ID))

	dup := *full
	wantErr(t, "JobCreate with the same ID", f.s.JobCreate(f.ctx, &dup), store.ErrConflict)
	running := *full
	running.ID, running.State = core.NewID("job"), core.JobRunning
	if err := f.s.JobCreate(f.ctx, &running); err == nil {
		t.Errorf("JobCreate of a running job: no error")
	}
	_, err := f.s.JobGet(f.ctx, "job-nope")
	wantErr(t, "JobGet missing", err, store.ErrNotFound)
}

func testJobList(t *testing.T, open func(t *testing.T) store.Store) {
	f := setup(t, open)
	old := f.job(func(j *store.Job) { j.CreatedAt, j.UpdatedAt = at(1), at(1) })
	mid := f.job(func(j *store.Job) { j.Project, j.CreatedAt, j.UpdatedAt = "speech", at(2), at(2) })
	young := f.job(func(j *store.Job) { j.CreatedAt, j.UpdatedAt = at(3), at(3) })
	_, err := f.s.JobCancel(f.ctx, &store.JobCancelParams{JobID: young.ID, Now: at(4)})
	noErr(t, "JobCancel", err)

	for _, tc := range []struct {
		name   string
		params store.JobListParams
		want   []string
	}{
		{"all", store.JobListParams{}, []string{young.ID, mid.ID, old.ID}},
		{"project", store.JobListParams{Project: "vision"}, []string{young.ID, old.ID}},
		{"state", store.JobListParams{States: []core.JobState{core.JobQueued}}, []string{mid.ID, old.ID}},
		{"states", store.JobListParams{States: []core.JobState{core.JobCancelled, core.JobQueued}}, []string{young.ID, mid.ID, old.ID}},
		{"project and state", store.JobListParams{Project: "vision", States: []core.JobState{core.JobCancelled}}, []string{young.ID}},
		{"limit", store.JobListParams{Limit: 2}, []string{young.ID, mid.ID}},
		{"no match", store.JobListParams{Project: "nope"}, nil},
	} {
		js, err := f.s.JobList(f.ctx, &tc.params)
		noErr(t, "JobList "+tc.name, err)
		var got []string
		for _, j := range js {
			got = append(got, j.ID)
		}
		diff(t, "JobList "+tc.name, tc.want, got)
	}
	js, err := f.s.JobList(f.ctx, &store.JobListParams{Project: "speech"})
	noErr(t, "JobList", err)
	diff(t, "JobList speech", []*store.Job{mid}, js)
}

func testObjects(t *testing.T, open func(t *testing.T) store.Store) {
	f := setup(t, open)
	named := &store.Object{ID: core.NewID("obj"), Kind: store.ObjectDataset, Project: "vision", Name: "coco", WrappedKey: []byte{1, 2, 3, 0, 255}, CreatedAt: at(1)}
	noErr(t, "ObjectCreate", f.s.ObjectCreate(f.ctx, named))
	// Unnamed objects are many; a name is unique per project and kind.
	for _, o := range []*store.Object{
		{ID: core.NewID("obj"), Kind: store.ObjectJobData, Project: "vision", WrappedKey: []byte{4}, CreatedAt: at(2)},
		{ID: core.NewID("obj"), Kind: store.ObjectJobData, Project: "vision", WrappedKey: []byte{5}, CreatedAt: at(2)},
		{ID: core.NewID("obj"), Kind: store.ObjectDataset, Project: "speech", Name: "coco", WrappedKey: []byte{6}, CreatedAt: at(2)},
		{ID: core.NewID("obj"), Kind: store.ObjectWorkdir, Project: "vision", Name: "coco", WrappedKey: []byte{7}, CreatedAt: at(2)},
	} {
		noErr(t, "ObjectCreate "+o.ID, f.s.ObjectCreate(f.ctx, o))
	}

	got, err := f.s.ObjectGet(f.ctx, named.ID)
	noErr(t, "ObjectGet", err)
	diff(t, "ObjectGet", named, got)
	got, err = f.s.ObjectGetByName(f.ctx, "vision", store.ObjectDataset, "coco")
	noErr(t, "ObjectGetByName", err)
	diff(t, "ObjectGetByName", named, got)

	dupID := *named
	dupID.Name = "other"
	wantErr(t, "ObjectCreate with the same ID", f.s.ObjectCreate(f.ctx, &dupID), store.ErrConflict)
	dupName := *named
	dupName.ID = core.NewID("obj")
	wantErr(t, "ObjectCreate with the same name", f.s.ObjectCreate(f.ctx, &dupName), store.ErrConflict)

	_, err = f.s.ObjectGet(f.ctx, "obj-nope")
	wantErr(t, "ObjectGet missing", err, store.ErrNotFound)
	_, err = f.s.ObjectGetByName(f.ctx, "vision", store.ObjectDataset, "nope")
	wantErr(t, "ObjectGetByName missing", err, store.ErrNotFound)
	_, err = f.s.ObjectGetByName(f.ctx, "nope", store.ObjectDataset, "coco")
	wantErr(t, "ObjectGetByName in another project", err, store.ErrNotFound)
}

func testDatasets(t *testing.T, open func(t *testing.T) store.Store) {
	f := setup(t, open)
	commit := func(project, name string, sec int) *store.Dataset {
		t.Helper()
		d := &store.Dataset{Project: project, Name: name, ObjectID: "obj-" + name, Manifest: "m-" + name + "-" + at(sec).Format("150405"),
			Classification: core.ClassInternal, Files: sec, Bytes: int64(sec) << 20, CreatedAt: at(sec)}
		noErr(t, "DatasetCommit", f.s.DatasetCommit(f.ctx, d))
		return d
	}
	coco1 := commit("vision", "coco", 1)
	coco2 := commit("vision", "coco", 2)
	imnet := commit("vision", "imagenet", 3)
	speech := commit("speech", "coco", 4)
	for _, c := range []struct {
		d    *store.Dataset
		want int
	}{{coco1, 1}, {coco2, 2}, {imnet, 1}, {speech, 1}} {
		if c.d.Version != c.want {
			t.Errorf("DatasetCommit %s/%s at %v: version %d, want %d", c.d.Project, c.d.Name, c.d.CreatedAt, c.d.Version, c.want)
		}
	}

	for _, tc := range []struct {
		name          string
		project, ds   string
		version       int
		want          *store.Dataset
		wantErrTarget error
	}{
		{"newest", "vision", "coco", 0, coco2, nil},
		{"version 1", "vision", "coco", 1, coco1, nil},
		{"version 2", "vision", "coco", 2, coco2, nil},
		{"other project", "speech", "coco", 0, speech, nil},
		{"missing version", "vision", "coco", 3, nil, store.ErrNotFound},
		{"missing name", "vision", "nope", 0, nil, store.ErrNotFound},
		{"missing project", "nope", "coco", 0, nil, store.ErrNotFound},
	} {
		got, err := f.s.DatasetGet(f.ctx, tc.project, tc.ds, tc.version)
		if tc.wantErrTarget != nil {
			wantErr(t, "DatasetGet "+tc.name, err, tc.wantErrTarget)
			continue
		}
		noErr(t, "DatasetGet "+tc.name, err)
		diff(t, "DatasetGet "+tc.name, tc.want, got)
	}

	key := func(d *store.Dataset) string { return d.Project + "/" + d.Name }
	list, err := f.s.DatasetList(f.ctx, "vision")
	noErr(t, "DatasetList", err)
	diff(t, "DatasetList vision", []*store.Dataset{coco2, imnet}, sortedBy(list, key))
	list, err = f.s.DatasetList(f.ctx, "")
	noErr(t, "DatasetList", err)
	diff(t, "DatasetList all", sortedBy([]*store.Dataset{coco2, imnet, speech}, key), sortedBy(list, key))

	noErr(t, "DatasetDelete", f.s.DatasetDelete(f.ctx, "vision", "coco"))
	for v := range 3 {
		_, err := f.s.DatasetGet(f.ctx, "vision", "coco", v)
		wantErr(t, "DatasetGet after DatasetDelete", err, store.ErrNotFound)
	}
	got, err := f.s.DatasetGet(f.ctx, "speech", "coco", 0)
	noErr(t, "DatasetGet of another project's dataset after DatasetDelete", err)
	diff(t, "DatasetGet of another project's dataset after DatasetDelete", speech, got)
	wantErr(t, "DatasetDelete again", f.s.DatasetDelete(f.ctx, "vision", "coco"), store.ErrNotFound)
	// With no version left, numbering starts again.
	if again := commit("vision", "coco", 5); again.Version != 1 {
		t.Errorf("DatasetCommit after DatasetDelete: version %d, want 1", again.Version)
	}
}

// testTimes checks that times come back in UTC, whatever zone they were
// given in.
func testTimes(t *testing.T, open func(t *testing.T) store.Store) {
	f := setup(t, open)
	zone := time.FixedZone("UTC+5:30", 5*3600+1800)
	p := f.pool(func(p *store.Pool) { p.CreatedAt = at(1).In(zone) })
	got, err := f.s.PoolGet(f.ctx, p.ID)
	noErr(t, "PoolGet", err)
	if !got.CreatedAt.Equal(at(1)) || got.CreatedAt.Location() != time.UTC {
		t.Errorf("PoolGet: CreatedAt %v, want %v in UTC", got.CreatedAt, at(1))
	}
	j := f.job(func(j *store.Job) { j.CreatedAt, j.UpdatedAt = at(2).In(zone), at(3).In(zone) })
	gotJ := f.getJob(j.ID)
	for _, c := range []struct {
		name      string
		got, want time.Time
	}{{"CreatedAt", gotJ.CreatedAt, at(2)}, {"UpdatedAt", gotJ.UpdatedAt, at(3)}} {
		if !c.got.Equal(c.want) || c.got.Location() != time.UTC {
			t.Errorf("JobGet: %s %v, want %v in UTC", c.name, c.got, c.want)
		}
	}
	if !gotJ.FinishedAt.IsZero() {
		t.Errorf("JobGet: FinishedAt %v, want zero", gotJ.FinishedAt)
	}
}

// testJobIdempotencyKey: a key names one job in its project; a second job
// with it is a conflict and leaves nothing behind, while another project
// may use the same key.
func testJobIdempotencyKey(t *testing.T, open func(t *testing.T) store.Store) {
	f := setup(t, open)
	j := f.job(func(j *store.Job) { j.IdempotencyKey, j.RequestHash = "key-1", "hash-1" })
	got, err := f.s.JobGetByIdempotencyKey(f.ctx, j.Project, "key-1")
	noErr(t, "JobGetByIdempotencyKey", err)
	if got.ID != j.ID || got.RequestHash != "hash-1" {
		t.Errorf("JobGetByIdempotencyKey = %s (hash %q), want %s (hash-1)", got.ID, got.RequestHash, j.ID)
	}
	again := *j
	again.ID = core.NewID("job")
	wantErr(t, "JobCreate with a taken key", f.s.JobCreate(f.ctx, &again), store.ErrConflict)
	_, err = f.s.JobGet(f.ctx, again.ID)
	wantErr(t, "JobGet of the refused job", err, store.ErrNotFound)

	elsewhere := f.job(func(j *store.Job) { j.Project, j.Spec.Project, j.IdempotencyKey = "other", "other", "key-1" })
	if got, err := f.s.JobGetByIdempotencyKey(f.ctx, "other", "key-1"); err != nil || got.ID != elsewhere.ID {
		t.Errorf("the same key in another project: %v, %v", got, err)
	}
	// Jobs without a key never collide.
	f.job()
	f.job()
	_, err = f.s.JobGetByIdempotencyKey(f.ctx, j.Project, "key-2")
	wantErr(t, "JobGetByIdempotencyKey of an unused key", err, store.ErrNotFound)
	_, err = f.s.JobGetByIdempotencyKey(f.ctx, j.Project, "")
	wantErr(t, "JobGetByIdempotencyKey of no key", err, store.ErrNotFound)
}
