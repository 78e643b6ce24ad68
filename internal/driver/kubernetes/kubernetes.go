// Package kubernetes is the driver of Kubernetes pools: EKS, GKE, AKS or
// any other cluster. It makes each of the cluster's GPU nodes that the
// pool selects a Lode node, driven by an in-process virtual agent: the
// driver joins the pool with its join token through the same agent API a
// `lode agent` uses and keeps each node's heartbeats going while the
// Kubernetes node is there and Ready. Leases, fencing, retries,
// reliability scores and the audit log therefore work as for any pool;
// what differs is how a task runs. An attempt becomes one Indexed Job (a
// pod per rank, each pinned to the node Lode chose for its rank), a
// headless Service for rank 0 and a Secret with the fencing token, all
// owned by the Job; the pods' states become task reports through the
// fenced agent endpoints; a stop deletes the Job. Each node's offer is its
// allocatable resources less what other pods ask for, read from informers.
//
// In a real cluster `lode runner`, the main process of every pod, reports
// too; both reports are the same facts, and the server takes a repeated
// one as no change.
package kubernetes

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	k8s "k8s.io/client-go/kubernetes"
	batchlisters "k8s.io/client-go/listers/batch/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"lode.dev/lode/internal/client"
	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/poolfile"
	"lode.dev/lode/internal/store"
	"lode.dev/lode/internal/wire"
)

// Config configures a driver for one pool.
type Config struct {
	Pool      string
	JoinToken string
	// Server is the Lode server the driver's virtual agents dial: the
	// server it runs in.
	Server string
	// PodServer is the Lode server as pods reach it; the pools file's
	// server_url wins over it.
	PodServer string
	// CA is the control plane's CA certificate (PEM): the driver's
	// virtual agents trust it, and pods' runners get it as LODE_CA.
	CA      []byte
	Def     *poolfile.Kubernetes
	Version string
	Logger  *slog.Logger
	// Kube replaces the client made from Def's kubeconfig (tests).
	Kube k8s.Interface
}

// Driver drives one Kubernetes pool. Run it with Run.
type Driver struct {
	cfg     Config
	log     *slog.Logger
	kube    k8s.Interface
	base    *client.Client
	sel     Selector
	pods    Pods
	ns      string
	timeout time.Duration

	factories []informers.SharedInformerFactory
	nodes     corelisters.NodeLister
	podIndex  cache.Indexer
	jobs      batchlisters.JobLister

	poke chan struct{}

	// The fields below belong to the goroutine that runs Run; heartbeat
	// goroutines see only what vnode.tasks publishes.
	vnodes   map[string]*vnode // by Kubernetes node name
	byID     map[string]*vnode // by Lode node ID
	attempts map[string]*attempt
	ended    map[string]time.Time // attempts done with, so a late Start does not revive one
	said     map[string]string    // what was last logged about a node, to log changes only
	// resting holds nodes that did not start a pod within the pending
	// timeout, and until when they offer nothing.
	resting map[string]time.Time
	// sweepFrom is when stray Jobs may be deleted; zero until a node has
	// joined.
	sweepFrom time.Time
	beats     sync.WaitGroup
}

// Pod indexes.
const (
	byAttempt = "attempt"
	byNode    = "node"
)

var routeKlog sync.Once

// New checks the configuration and connects to the cluster (without
// talking to it yet).
func New(cfg Config) (*Driver, error) {
	if cfg.Def == nil {
		return nil, fmt.Errorf("kubernetes pool %s: no kubernetes: section", cfg.Pool)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	log := cfg.Logger.With(slog.String("pool", cfg.Pool))
	// client-go logs through klog, which writes to stderr on its own;
	// its reflectors' complaints (an unreachable API server) belong in
	// the server's log.
	routeKlog.Do(func() { klog.SetLogger(logr.FromSlogHandler(cfg.Logger.Handler()).WithName("client-go")) })
	base, err := client.New(cfg.Server, client.TrustCA(cfg.CA))
	if err != nil {
		return nil, err
	}
	d := &Driver{
		cfg: cfg, log: log, base: base, timeout: cfg.Def.Timeout(),
		sel: Selector{NodeSelector: cfg.Def.NodeSelector, Models: cfg.Def.Models()},
		pods: Pods{
			Pool: cfg.Pool, Image: cmp.Or(cfg.Def.Image, "lode:"+cmp.Or(cfg.Version, "latest")), JobImage: cfg.Def.JobImage,
			ServerURL: cmp.Or(cfg.Def.ServerURL, cfg.PodServer, cfg.Server), CA: cfg.CA, Queue: cfg.Def.Queue, Annotations: cfg.Def.PodAnnotations,
		},
		kube: cfg.Kube, ns: cfg.Def.Namespace,
		poke:   make(chan struct{}, 1),
		vnodes: map[string]*vnode{}, byID: map[string]*vnode{}, attempts: map[string]*attempt{},
		ended: map[string]time.Time{}, said: map[string]string{}, resting: map[string]time.Time{},
	}
	if d.kube == nil {
		rc, ns, err := restConfig(cfg.Def)
		if err != nil {
			return nil, fmt.Errorf("kubernetes pool %s: %w", cfg.Pool, err)
		}
		if d.kube, err = k8s.NewForConfig(rc); err != nil {
			return nil, fmt.Errorf("kubernetes pool %s: %w", cfg.Pool, err)
		}
		d.ns = cmp.Or(d.ns, ns)
	}
	d.ns = cmp.Or(d.ns, "default")
	return d, nil
}

// restConfig reads the kubeconfig the pool names, or the pod's service
// account when it names none; it returns the namespace of the context too.
func restConfig(def *poolfile.Kubernetes) (*rest.Config, string, error) {
	if def.Kubeconfig == "" {
		rc, err := rest.InClusterConfig()
		if err != nil {
			return nil, "", fmt.Errorf("no kubeconfig given, and not running in a cluster (%v): set kubernetes.kubeconfig", err)
		}
		ns, _ := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
		return rc, strings.TrimSpace(string(ns)), nil
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: def.Kubeconfig},
		&clientcmd.ConfigOverrides{CurrentContext: def.Context})
	rc, err := cc.ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("kubeconfig %s: %w", def.Kubeconfig, err)
	}
	ns, _, err := cc.Namespace()
	if err != nil {
		return nil, "", fmt.Errorf("kubeconfig %s: %w", def.Kubeconfig, err)
	}
	return rc, ns, nil
}

// Run drives the pool until ctx ends. Then its nodes leave the pool, which
// ends their attempts as lost (a later server places them again from their
// checkpoints), and their Jobs are deleted. It returns an error only when
// it could not start.
func (d *Driver) Run(ctx context.Context) error {
	if err := d.startInformers(ctx); err != nil {
		return err
	}
	d.log.Info("kubernetes pool watching its cluster", slog.String("namespace", d.namespaceText()),
		slog.Int("gpu_models", len(d.sel.Models)), slog.Duration("pending_timeout", d.timeout))
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			d.shutdown()
			return nil
		case <-d.poke:
		case <-tick.C:
		}
		d.reconcile(ctx)
	}
}

func (d *Driver) namespaceText() string {
	if d.cfg.Def.NamespacePerProject {
		return "one per project"
	}
	return d.ns
}

// wake asks for a pass soon; passes read the informers' caches, so one
// pass covers any number of events.
func (d *Driver) wake() {
	select {
	case d.poke <- struct{}{}:
	default:
	}
}

func (d *Driver) startInformers(ctx context.Context) error {
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { d.wake() },
		UpdateFunc: func(any, any) { d.wake() },
		DeleteFunc: func(any) { d.wake() },
	}
	// Nodes and pods cluster-wide: any pod on a node takes its capacity.
	all := informers.NewSharedInformerFactory(d.kube, 0)
	nodes := all.Core().V1().Nodes()
	pods := all.Core().V1().Pods()
	if err := pods.Informer().AddIndexers(cache.Indexers{
		byAttempt: func(obj any) ([]string, error) {
			if id := obj.(*corev1.Pod).Labels[LabelAttempt]; id != "" {
				return []string{id}, nil
			}
			return nil, nil
		},
		byNode: func(obj any) ([]string, error) {
			if n := obj.(*corev1.Pod).Spec.NodeName; n != "" {
				return []string{n}, nil
			}
			return nil, nil
		},
	}); err != nil {
		return err
	}
	// Jobs: only the pool's own.
	opts := []informers.SharedInformerOption{informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.LabelSelector = LabelPool + "=" + d.cfg.Pool
	})}
	if !d.cfg.Def.NamespacePerProject {
		opts = append(opts, informers.WithNamespace(d.ns))
	}
	own := informers.NewSharedInformerFactoryWithOptions(d.kube, 0, opts...)
	jobs := own.Batch().V1().Jobs()
	for _, inf := range []cache.SharedIndexInformer{nodes.Informer(), pods.Informer(), jobs.Informer()} {
		if _, err := inf.AddEventHandler(handler); err != nil {
			return err
		}
	}
	d.nodes, d.podIndex, d.jobs = nodes.Lister(), pods.Informer().GetIndexer(), jobs.Lister()
	d.factories = []informers.SharedInformerFactory{all, own}
	for _, f := range d.factories {
		f.Start(ctx.Done())
	}
	for _, f := range d.factories {
		for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("kubernetes pool %s: could not list %v", d.cfg.Pool, typ)
			}
		}
	}
	return nil
}

// reconcile is one pass: heartbeats' answers taken in, nodes joined or
// gone, attempts' objects made, pinned, observed and deleted, and stray
// objects swept.
func (d *Driver) reconcile(ctx context.Context) {
	now := time.Now()
	for _, v := range d.byID {
		in, acked := v.take()
		v.seen = acked
		for _, r := range in {
			d.onReply(r)
		}
	}
	d.publish()
	d.syncNodes(ctx, now)
	for _, a := range d.attempts {
		d.syncAttempt(ctx, a, now)
	}
	d.sweep(ctx, now)
	d.publish()
}

// publish hands each node's heartbeats the tasks it runs.
func (d *Driver) publish() {
	lists := map[*vnode][]wire.TaskRef{}
	for _, a := range d.attempts {
		for r, id := range a.nodes {
			if v := d.byID[id]; v != nil && a.listed[r] {
				lists[v] = append(lists[v], wire.TaskRef{AttemptID: a.id, Rank: r})
			}
		}
	}
	gens := map[*vnode]uint64{}
	for _, v := range d.vnodes {
		gens[v] = v.setTasks(lists[v])
	}
	for _, a := range d.attempts {
		for r, id := range a.nodes {
			if v := d.byID[id]; v != nil && a.dropping(r) && a.dropGen[r] == 0 {
				a.dropGen[r] = gens[v]
			}
		}
	}
}

// podsOn lists the pods bound to a node.
func (d *Driver) podsOn(node string) []*corev1.Pod {
	objs, _ := d.podIndex.ByIndex(byNode, node)
	out := make([]*corev1.Pod, len(objs))
	for i, o := range objs {
		out[i] = o.(*corev1.Pod)
	}
	return out
}

// ours says whether Lode counts a pod's resources itself: it is a rank of
// an attempt the driver holds whose task has not ended.
func (d *Driver) ours(p *corev1.Pod) bool {
	a := d.attempts[p.Labels[LabelAttempt]]
	if a == nil || p.Labels[LabelPool] != d.cfg.Pool {
		return false
	}
	r, ok := RankIndex(p)
	return ok && r < len(a.told) && !a.told[r].Terminal()
}

func (d *Driver) nodeExists(name string) bool {
	_, err := d.nodes.Get(name)
	return err == nil
}

// syncNodes joins the pool's usable nodes, lets go of the others, and
// hands each node's heartbeats its current offer.
func (d *Driver) syncNodes(ctx context.Context, now time.Time) {
	nodes, err := d.nodes.List(labels.Everything())
	if err != nil {
		d.log.Error("listing nodes", slog.Any("err", err))
		return
	}
	type want struct {
		model string
		offer Offer
	}
	wanted := map[string]want{}
	for _, n := range nodes {
		model, ok := d.sel.Match(n)
		if !ok {
			continue
		}
		if why := d.sel.Usable(n, model); why != "" {
			d.note(n.Name, "not offered: "+why)
			continue
		}
		o := NodeOffer(n, d.sel.Models[model].ResourceName, d.podsOn(n.Name), d.ours)
		if until, ok := d.resting[n.Name]; ok {
			if now.Before(until) {
				// Offering it now would place the same job on the node
				// that just failed to start it.
				o = Offer{}
			} else {
				delete(d.resting, n.Name)
			}
		}
		wanted[n.Name] = want{model, o}
	}
	for name, v := range d.vnodes {
		switch w, ok := wanted[name]; {
		case v.gone():
			// The server declared it lost or left; its attempts ended.
			d.log.Warn("kubernetes node dropped by the server; joining it again if it is usable", slog.String("node", name), slog.String("lode_node", v.id))
			d.release(v, now)
		case !ok:
			why := "it was deleted"
			if d.nodeExists(name) {
				why = d.said[name]
			}
			if d.busy(v) {
				// Its tasks cannot go on. Its heartbeats stop, its lease
				// runs out and the server declares it lost, which ends
				// its attempts and places their jobs again; leaving
				// instead would call the loss clean.
				d.log.Warn("kubernetes node with tasks gone or unusable: its heartbeats stop, and its lease will run out",
					slog.String("node", name), slog.String("lode_node", v.id), slog.String("why", why))
			} else {
				d.log.Info("kubernetes node gone or unusable: leaving the pool", slog.String("node", name), slog.String("lode_node", v.id),
					slog.String("why", why))
				d.leave(v)
			}
			d.release(v, now)
		default:
			if old, _ := v.setOffer(w.offer); old != w.offer {
				d.log.Info("kubernetes node's offer changed", slog.String("node", name), slog.Int("gpus", w.offer.GPUs),
					slog.Int("gpus_before", old.GPUs), slog.Int64("millicpus", w.offer.MilliCPUs), slog.Int64("memory", w.offer.MemoryBytes))
			}
		}
	}
	for name, w := range wanted {
		if _, ok := d.vnodes[name]; ok {
			continue
		}
		if w.offer.MilliCPUs <= 0 || w.offer.MemoryBytes <= 0 {
			// A node joins with some CPU and memory to offer; once
			// joined, its offer may fall to nothing.
			d.note(name, "not offered: other pods ask for all of its CPUs or memory")
			continue
		}
		d.join(ctx, name, w.model, w.offer)
	}
}

// note logs what is said of a node when it changes.
func (d *Driver) note(node, what string) {
	if d.said[node] != what {
		d.said[node] = what
		d.log.Info("kubernetes node "+what, slog.String("node", node))
	}
}

// busy says whether any task of a held attempt is on the node.
func (d *Driver) busy(v *vnode) bool {
	for _, a := range d.attempts {
		for r, id := range a.nodes {
			if id == v.id && a.listed[r] {
				return true
			}
		}
	}
	return false
}

// join makes a Kubernetes node a Lode node of the pool.
func (d *Driver) join(ctx context.Context, name, model string, o Offer) {
	jctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	node, joined, err := d.base.JoinAs(jctx, &wire.Join{
		JoinToken: d.cfg.JoinToken, Name: name, MilliCPUs: o.MilliCPUs, MemoryBytes: o.MemoryBytes, GPUs: o.capacity(model).GPUs,
		Labels: map[string]string{"lode.dev/kubernetes-node": name}, AgentVersion: d.cfg.Version,
	})
	if err != nil {
		if ctx.Err() == nil {
			d.note(name, fmt.Sprintf("could not join the pool: %v", err))
		}
		return
	}
	d.said[name] = "joined"
	v := newVnode(name, model, joined, node, o)
	d.vnodes[name], d.byID[v.id] = v, v
	if d.sweepFrom.IsZero() {
		d.sweepFrom = time.Now().Add(2 * v.leaseTTL())
	}
	bctx, stop := context.WithCancel(ctx)
	v.stop = stop
	d.beats.Add(1)
	go func() {
		defer d.beats.Done()
		v.beat(bctx, d.wake, d.log)
	}()
	d.log.Info("kubernetes node joined", slog.String("node", name), slog.String("lode_node", v.id),
		slog.String("model", model), slog.Int("gpus", o.GPUs), slog.Int64("millicpus", o.MilliCPUs), slog.Int64("memory", o.MemoryBytes))
}

// leave tells the server a node left cleanly.
func (d *Driver) leave(v *vnode) {
	v.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := v.c.Leave(ctx); err != nil && !errors.Is(err, store.ErrNodeGone) && !client.IsUnauthorized(err) {
		d.log.Warn("could not tell the server a node left; its lease will run out", slog.String("lode_node", v.id), slog.Any("err", err))
	}
}

// release forgets a node: its heartbeats stop; attempts with a rank on it
// are given up once the server must have ended them (see syncAttempt).
func (d *Driver) release(v *vnode, now time.Time) {
	v.stop()
	v.releasedAt = now
	delete(d.vnodes, v.name)
	// byID keeps it: attempts look their ranks' nodes up there.
}

// onReply takes in what a heartbeat's answer says to start and stop.
func (d *Driver) onReply(r *wire.HeartbeatReply) {
	for _, as := range r.Start {
		id := as.Task.AttemptID
		if _, done := d.ended[id]; done {
			continue
		}
		if a := d.attempts[id]; a != nil {
			if r := as.Task.Rank; r < len(a.listed) && !a.told[r].Terminal() {
				a.listed[r] = true
			}
			continue
		}
		a := newAttempt(as, d.namespaceFor(as.Job.Project))
		d.attempts[id] = a
		d.log.Info("attempt assigned", slog.String("attempt", id), slog.String("job", as.Job.ID), slog.Int("ranks", len(a.nodes)),
			slog.String("namespace", a.ns), slog.String("name", a.name))
	}
	for _, s := range r.Stop {
		a := d.attempts[s.AttemptID]
		if a == nil || a.stopping {
			continue
		}
		if p := d.rankPod(a, s.Rank); p != nil && (p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed) {
			// A rank that already ended (its runner reported it) is
			// off the list; the others go on.
			if s.Rank < len(a.listed) {
				a.listed[s.Rank] = false
			}
			continue
		}
		d.log.Info("stopping attempt", slog.String("attempt", a.id), slog.String("reason", s.Reason))
		a.stop(s.Reason)
	}
}

func (d *Driver) namespaceFor(project string) string {
	if d.cfg.Def.NamespacePerProject {
		return project
	}
	return d.ns
}

// shutdown stops every node's heartbeats, leaves the pool and deletes the
// pool's Jobs: without its virtual agents nothing would report for them.
func (d *Driver) shutdown() {
	for _, v := range d.vnodes {
		d.leave(v)
	}
	d.beats.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, a := range d.attempts {
		d.deleteJob(ctx, a.ns, a.name, metav1.DeletePropagationBackground)
	}
	d.log.Info("kubernetes pool stopped", slog.Int("nodes_left", len(d.vnodes)), slog.Int("attempts_ended", len(d.attempts)))
}

// deleteJob deletes a Job and, through their owner references, its pods,
// Service and Secret.
func (d *Driver) deleteJob(ctx context.Context, ns, name string, prop metav1.DeletionPropagation) error {
	err := d.kube.BatchV1().Jobs(ns).Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: &prop})
	if err != nil && !apierrors.IsNotFound(err) {
		d.log.Error("could not delete a Job", slog.String("namespace", ns), slog.String("job", name), slog.Any("err", err))
		return err
	}
	return nil
}

// sweep deletes the pool's Jobs that belong to no attempt the driver
// holds: an earlier server's, left behind when it stopped without its
// nodes leaving. Those attempts end when their nodes' leases run out,
// which a restarted server renews once, at start; so the sweep waits two
// leases from its first join, and a pod stopped by it cannot end an
// attempt that is still live.
func (d *Driver) sweep(ctx context.Context, now time.Time) {
	if d.sweepFrom.IsZero() || now.Before(d.sweepFrom) {
		return
	}
	jobs, err := d.jobs.List(labels.Everything())
	if err != nil {
		return
	}
	for _, j := range jobs {
		if j.DeletionTimestamp != nil || d.attempts[j.Labels[LabelAttempt]] != nil {
			continue
		}
		d.log.Info("deleting a Job of no current attempt", slog.String("namespace", j.Namespace), slog.String("job", j.Name))
		d.deleteJob(ctx, j.Namespace, j.Name, metav1.DeletePropagationBackground)
	}
	for id, at := range d.ended {
		if now.Sub(at) > time.Hour {
			delete(d.ended, id)
		}
	}
	for name, until := range d.resting {
		if now.After(until) {
			delete(d.resting, name)
		}
	}
	// Nodes let go of long ago are kept only while an attempt names them.
	named := map[string]bool{}
	for _, a := range d.attempts {
		for _, id := range a.nodes {
			named[id] = true
		}
	}
	for id, v := range d.byID {
		if !v.releasedAt.IsZero() && now.Sub(v.releasedAt) > time.Hour && !named[id] {
			delete(d.byID, id)
		}
	}
}

// jobGone reports whether an attempt's Job and pods are all gone.
func (d *Driver) jobGone(a *attempt) bool {
	if _, err := d.jobs.Jobs(a.ns).Get(a.name); err == nil {
		return false
	}
	pods, _ := d.podIndex.ByIndex(byAttempt, a.id)
	return len(pods) == 0
}

// forgetLostPods deletes at once an attempt's pods whose nodes are gone:
// no kubelet is left to end them, and the Job's deletion waits for them.
// Kubernetes' pod garbage collector would too, but only after a
// quarantine of most of a minute.
func (d *Driver) forgetLostPods(ctx context.Context, a *attempt, log *slog.Logger) {
	objs, _ := d.podIndex.ByIndex(byAttempt, a.id)
	for _, o := range objs {
		p := o.(*corev1.Pod)
		if p.Spec.NodeName == "" || d.nodeExists(p.Spec.NodeName) ||
			p.DeletionGracePeriodSeconds != nil && *p.DeletionGracePeriodSeconds == 0 {
			continue
		}
		err := d.kube.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr(int64(0))})
		if err != nil && !apierrors.IsNotFound(err) {
			a.warn(log, "could not delete a pod whose node is gone", err)
		}
	}
}

// rankPod is the pod of an attempt's rank, the newest if there are
// several.
func (d *Driver) rankPod(a *attempt, rank int) *corev1.Pod {
	objs, _ := d.podIndex.ByIndex(byAttempt, a.id)
	var best *corev1.Pod
	for _, o := range objs {
		p := o.(*corev1.Pod)
		if r, ok := RankIndex(p); ok && r == rank && p.Labels[LabelPool] == d.cfg.Pool &&
			(best == nil || p.CreationTimestamp.After(best.CreationTimestamp.Time)) {
			best = p
		}
	}
	return best
}

// syncAttempt moves an attempt on: its objects made, its pods pinned, its
// ranks' states reported, and its Job deleted once it stops or ends.
func (d *Driver) syncAttempt(ctx context.Context, a *attempt, now time.Time) {
	log := d.log.With(slog.String("attempt", a.id))
	if !a.stopping {
		if why := d.orphaned(a, now); why != "" {
			// The server ended the attempt when the node's lease ran
			// out; the pods are deleted only now, so that nothing they
			// report can be taken for the end of a live attempt.
			a.stop(why)
			a.quiet = true
			log.Info("giving up attempt", slog.String("why", why))
		}
	}
	if !a.stopping && !a.created {
		d.create(ctx, a, log)
	}
	if !a.stopping && a.created {
		d.pin(ctx, a, log)
		d.observe(ctx, a, now, log)
		if a.over() {
			a.stop("every rank has ended")
			a.quiet = true
		}
	}
	if a.stopping {
		if !a.deleted {
			// Foreground: the Job goes only once its pods, Service and
			// Secret are gone, so a gone Job means a stopped attempt.
			if d.deleteJob(ctx, a.ns, a.name, metav1.DeletePropagationForeground) == nil {
				a.deleted = true
			}
			return
		}
		d.forgetLostPods(ctx, a, log)
		if !d.jobGone(a) {
			return
		}
		if !a.quiet {
			for r, told := range a.told {
				if !told.Terminal() {
					d.report(ctx, a, r, &wire.TaskStatus{State: core.TaskKilled, ExitCode: -1, Message: a.why}, log)
				}
			}
		}
		log.Info("attempt's objects deleted", slog.String("why", a.why))
		delete(d.attempts, a.id)
		d.ended[a.id] = now
	}
}

// orphaned says why an attempt cannot go on: a rank's node is gone, and
// long enough ago that its lease has run out.
func (d *Driver) orphaned(a *attempt, now time.Time) string {
	for r, id := range a.nodes {
		v := d.byID[id]
		switch {
		case v == nil:
			return fmt.Sprintf("rank %d is on node %s, which this pool does not drive", r, id)
		case !v.releasedAt.IsZero() && now.Sub(v.releasedAt) > 2*v.leaseTTL():
			return fmt.Sprintf("rank %d's node %s (%s) is gone", r, v.name, id)
		}
	}
	return ""
}

// create makes an attempt's Job, then its Secret and Service owned by the
// Job. Pods wait behind the placement gate until all three exist.
func (d *Driver) create(ctx context.Context, a *attempt, log *slog.Logger) {
	var gpu *poolfile.GPUNodes
	if v := d.byID[a.nodes[0]]; v != nil && v.model != "" {
		g := d.sel.Models[v.model]
		gpu = &g
	}
	job := a.as.Job
	objs, err := Render(d.pods, Attempt{
		ID: a.id, JobID: job.ID, Project: job.Project, Namespace: a.ns, Ranks: len(a.nodes),
		Command: job.Spec.Command, Image: job.Spec.Image, Resources: a.as.Task.Resources,
		FencingToken: a.as.FencingToken, MasterPort: a.as.MasterPort, GPU: gpu,
	})
	if err != nil {
		// The job cannot run on this pool as it is written.
		log.Warn("attempt cannot run here", slog.Any("err", err))
		for r := range a.told {
			d.report(ctx, a, r, &wire.TaskStatus{State: core.TaskExited, ExitCode: 1, Message: "lode: " + err.Error()}, log)
		}
		a.stop(err.Error())
		a.quiet = true
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	jobs := d.kube.BatchV1().Jobs(a.ns)
	created, err := jobs.Create(cctx, objs.Job, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		created, err = jobs.Get(cctx, objs.Job.Name, metav1.GetOptions{})
	}
	if err != nil {
		a.warn(log, "could not create the attempt's Job (retrying; its ranks are lost if this lasts past the pending timeout)", err)
		return
	}
	Owned(&objs.Secret.ObjectMeta, created)
	Owned(&objs.Service.ObjectMeta, created)
	if _, err := d.kube.CoreV1().Secrets(a.ns).Create(cctx, objs.Secret, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		a.warn(log, "could not create the attempt's Secret (retrying)", err)
		return
	}
	if _, err := d.kube.CoreV1().Services(a.ns).Create(cctx, objs.Service, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		a.warn(log, "could not create the attempt's Service (retrying)", err)
		return
	}
	a.created = true
	log.Info("attempt's Job, Service and Secret created", slog.String("namespace", a.ns), slog.String("job", a.name))
}

// pin holds each gated pod to its rank's node and lifts the gate.
func (d *Driver) pin(ctx context.Context, a *attempt, log *slog.Logger) {
	objs, _ := d.podIndex.ByIndex(byAttempt, a.id)
	for _, o := range objs {
		p := o.(*corev1.Pod)
		gated := false
		for _, g := range p.Spec.SchedulingGates {
			gated = gated || g.Name == PlacementGate
		}
		r, ok := RankIndex(p)
		if !gated || !ok || r >= len(a.nodes) || p.DeletionTimestamp != nil {
			continue
		}
		v := d.byID[a.nodes[r]]
		if v == nil {
			continue // orphaned says so
		}
		p = p.DeepCopy()
		p.Spec.Affinity = Pin(v.name)
		var gates []corev1.PodSchedulingGate
		for _, g := range p.Spec.SchedulingGates {
			if g.Name != PlacementGate {
				gates = append(gates, g)
			}
		}
		p.Spec.SchedulingGates = gates
		uctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := d.kube.CoreV1().Pods(p.Namespace).Update(uctx, p, metav1.UpdateOptions{})
		cancel()
		switch {
		case err == nil:
			log.Debug("pod pinned", slog.Int("rank", r), slog.String("node", v.name))
		case apierrors.IsConflict(err) || apierrors.IsNotFound(err):
			// A newer pod is in the cache soon; the next pass pins it.
		default:
			a.warn(log, "could not pin a pod to its node", err)
		}
	}
}

// observe reports what the ranks' pods show. Ranks that exited go first:
// when one fails, the Job controller deletes the others' pods, which must
// not be taken for the cause.
func (d *Driver) observe(ctx context.Context, a *attempt, now time.Time, log *slog.Logger) {
	views := make([]Seen, len(a.told))
	order := make([]int, 0, len(a.told))
	for r := range a.told {
		views[r] = See(d.rankPod(a, r), d.nodeExists)
		order = append(order, r)
	}
	slices.SortStableFunc(order, func(x, y int) int {
		return cmp.Compare(b2i(views[y].State == core.TaskExited), b2i(views[x].State == core.TaskExited))
	})
	for _, r := range order {
		if a.dropping(r) {
			if v := d.byID[a.nodes[r]]; v != nil && a.dropGen[r] != 0 && v.seen >= a.dropGen[r] {
				a.told[r] = core.TaskLost
			}
			continue
		}
		if a.told[r].Terminal() {
			continue
		}
		seen := views[r]
		rep := Decide(a.told[r], seen, now.Sub(a.since), d.timeout)
		if rep.Stuck && !d.rest(a, r, now, log) {
			continue
		}
		if rep.Running && !d.report(ctx, a, r, &wire.TaskStatus{State: core.TaskRunning, Message: seen.Why}, log) {
			continue
		}
		if rep.Running {
			a.told[r] = core.TaskRunning
		}
		if rep.End != nil {
			if !d.report(ctx, a, r, &wire.TaskStatus{State: rep.End.State, ExitCode: rep.End.ExitCode, Message: rep.End.Why}, log) {
				continue
			}
			a.told[r] = rep.End.State
		}
		if rep.Drop {
			if rep.End == nil {
				log.Info("rank lost; its node's heartbeats no longer list it", slog.Int("rank", r), slog.String("why", seen.Why))
			}
			a.listed[r] = false
		}
	}
}

// rest makes the node of a rank that did not start in time offer nothing
// for a pending timeout, and reports whether the server has taken that in:
// only then is the rank reported lost, or its job would be placed on the
// same node again at once.
func (d *Driver) rest(a *attempt, r int, now time.Time, log *slog.Logger) bool {
	v := d.byID[a.nodes[r]]
	if v == nil {
		return true
	}
	if _, ok := d.resting[v.name]; !ok {
		d.resting[v.name] = now.Add(d.timeout)
		log.Warn("kubernetes node did not start a pod in time; it offers nothing for a while",
			slog.String("node", v.name), slog.Duration("for", d.timeout))
	}
	if a.stuckGen[r] == 0 {
		_, a.stuckGen[r] = v.setOffer(Offer{})
	}
	return v.seen >= a.stuckGen[r]
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// report sends a rank's state through the fenced agent endpoint, as its
// node. It reports whether the server has the news now: sent, or refused
// as no longer news (the runner reported it or a later state first, or the
// attempt is over).
func (d *Driver) report(ctx context.Context, a *attempt, rank int, st *wire.TaskStatus, log *slog.Logger) bool {
	v := d.byID[a.nodes[rank]]
	if v == nil {
		return true
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := v.c.TaskStatus(rctx, store.Fence{AttemptID: a.id, Token: a.as.FencingToken}, rank, st)
	switch {
	case err == nil:
		log.Info("rank reported", slog.Int("rank", rank), slog.String("state", string(st.State)), slog.Int("exit_code", st.ExitCode), slog.String("why", st.Message))
		return true
	case errors.Is(err, store.ErrFenced), errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrNodeGone), client.IsUnauthorized(err):
		return true
	}
	a.warn(log, fmt.Sprintf("could not report rank %d %s (retrying)", rank, st.State), err)
	return false
}
