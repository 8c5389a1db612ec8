package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// AuditPolicy is the kube-apiserver audit policy the benchmark runs its API server with
// (--api-audit): the writes to Environment statuses and to Events with their request bodies
// (to tell the writer of a status write and the reason of an Event), and the reads of single
// Environments without them. Nothing else is logged.
const AuditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Request
  verbs: ["patch", "update", "create"]
  resources:
  - group: deploy.autodeploy.dev
    resources: ["environments/status"]
  - group: events.k8s.io
    resources: ["events"]
  - group: ""
    resources: ["events"]
- level: Metadata
  verbs: ["get"]
  resources:
  - group: deploy.autodeploy.dev
    resources: ["environments"]
- level: None
`

// WithAudit makes api write an audit log with AuditPolicy into dir, and returns the log's path
// (for Config.AuditLog).
func WithAudit(api *envtest.APIServer, dir string) (string, error) {
	policy := filepath.Join(dir, "audit-policy.yaml")
	if err := os.WriteFile(policy, []byte(AuditPolicy), 0o600); err != nil {
		return "", err
	}
	path := filepath.Join(dir, "audit.log")
	// One file, never rotated (kube-apiserver rotates at 100 MB by default, which a run at
	// N = 10,000 passes): readAudit reads only this one.
	api.Configure().Set("audit-policy-file", policy).Set("audit-log-path", path).Set("audit-log-maxsize", "0")
	return path, nil
}

// Writers of Environment statuses, as told apart by what a status write sets.
const (
	writerReceiver   = "receiver"
	writerReconciler = "reconciler"
	writerRollouts   = "rollout recorder"
)

var writers = []string{writerReceiver, writerReconciler, writerRollouts}

// APIWrites is what the API server's audit log says the manager did to it over a window.
type APIWrites struct {
	// Audited is false when the API server ran without the audit log (--api-audit=false).
	Audited bool
	// Status counts the accepted status writes (patch or update, 2xx) by writer; Conflicts
	// the ones refused with 409 Conflict (optimistic concurrency), by writer.
	Status, Conflicts map[string]int
	// Events counts the Events created, by reason; EventPatches the writes to existing
	// Events (the recorder's series of repeated Events).
	Events       map[string]int
	EventPatches int
	// LiveReads counts the GETs of single Environments (reads past the cache).
	LiveReads int
}

func (w APIWrites) statusTotal() int { return sum(w.Status) }
func (w APIWrites) eventTotal() int  { return sum(w.Events) + w.EventPatches }

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// auditEntry is the part of an audit log entry the benchmark reads.
type auditEntry struct {
	Verb      string `json:"verb"`
	ObjectRef struct {
		Namespace   string `json:"namespace"`
		Name        string `json:"name"`
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
	} `json:"objectRef"`
	ResponseStatus struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
	RequestObject            json.RawMessage `json:"requestObject"`
	RequestReceivedTimestamp time.Time       `json:"requestReceivedTimestamp"`
}

// statusWriter tells which of the manager's writers made a status write from what it sets:
// the receiver sets status.latestBuild and nothing else; the reconciler records or clears
// status.pendingDeploy with every deploy (and writes the other fields: conditions, gates,
// observedGeneration); the rollout recorder ends the newest deploy of status.history
// without touching status.pendingDeploy.
func statusWriter(body json.RawMessage) string {
	var req struct {
		Status map[string]json.RawMessage `json:"status"`
	}
	if json.Unmarshal(body, &req) != nil {
		return writerReconciler
	}
	_, latest := req.Status["latestBuild"]
	_, pending := req.Status["pendingDeploy"]
	_, history := req.Status["history"]
	switch {
	case latest && len(req.Status) == 1:
		return writerReceiver
	case pending:
		return writerReconciler
	case history:
		return writerRollouts
	default:
		return writerReconciler
	}
}

// readAudit counts, from the audit log at path, the requests about namespace ns received in
// [from, to).
func readAudit(path, ns string, from, to time.Time) (APIWrites, error) {
	w := APIWrites{Audited: true, Status: map[string]int{}, Conflicts: map[string]int{}, Events: map[string]int{}}
	f, err := os.Open(path)
	if err != nil {
		return w, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		// Cheap filter before decoding: the namespace appears in every entry about it.
		if !strings.Contains(string(line), `"namespace":"`+ns+`"`) {
			continue
		}
		var e auditEntry
		if err := json.Unmarshal(line, &e); err != nil {
			return w, fmt.Errorf("audit log: %w", err)
		}
		if e.ObjectRef.Namespace != ns || e.RequestReceivedTimestamp.Before(from) || !e.RequestReceivedTimestamp.Before(to) {
			continue
		}
		ok := e.ResponseStatus.Code/100 == 2
		switch {
		case e.ObjectRef.Resource == "environments" && e.ObjectRef.Subresource == "status" && (e.Verb == "patch" || e.Verb == "update"):
			who := statusWriter(e.RequestObject)
			switch {
			case ok:
				w.Status[who]++
			case e.ResponseStatus.Code == 409:
				w.Conflicts[who]++
			}
		case e.ObjectRef.Resource == "environments" && e.ObjectRef.Subresource == "" && e.Verb == "get":
			w.LiveReads++
		case e.ObjectRef.Resource == "events" && ok && e.Verb == "create":
			var ev struct {
				Reason string `json:"reason"`
			}
			_ = json.Unmarshal(e.RequestObject, &ev)
			w.Events[ev.Reason]++
		case e.ObjectRef.Resource == "events" && ok && (e.Verb == "patch" || e.Verb == "update"):
			w.EventPatches++
		}
	}
	return w, sc.Err()
}

// controlPlaneProc is a kube-apiserver or etcd process started by the benchmark (envtest).
type controlPlaneProc struct {
	name string // "kube-apiserver" or "etcd"
	pid  int
}

// controlPlaneProcs finds the benchmark's kube-apiserver and etcd child processes.
func controlPlaneProcs() []controlPlaneProc {
	self := os.Getpid()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []controlPlaneProc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f := procStat(pid)
		if f == nil {
			continue
		}
		if ppid, _ := strconv.Atoi(f[1]); ppid != self {
			continue
		}
		comm, _ := os.ReadFile("/proc/" + e.Name() + "/comm")
		if name := strings.TrimSpace(string(comm)); name == "kube-apiserver" || name == "etcd" {
			out = append(out, controlPlaneProc{name: name, pid: pid})
		}
	}
	slices.SortFunc(out, func(a, b controlPlaneProc) int { return strings.Compare(a.name, b.name) })
	return out
}

// procRSSKB is the resident set (VmRSS) of process pid in KiB; 0 if unknown.
func procRSSKB(pid int) int64 { return procStatusKB(pid, "VmRSS:") }

// ControlPlaneUse is the CPU and memory of kube-apiserver and etcd over a window.
type ControlPlaneUse struct {
	// CPU over the window and peak resident set (VmRSS sampled every 500 ms, KiB), by
	// process name.
	CPU    map[string]time.Duration
	PeakKB map[string]int64
}

// controlPlaneSampler follows kube-apiserver's and etcd's resident set until stopped.
type controlPlaneSampler struct {
	procs []controlPlaneProc
	cpu0  map[string]time.Duration
	mu    sync.Mutex
	peak  map[string]int64
	stop  chan struct{}
	done  chan struct{}
}

func startControlPlaneSampler() *controlPlaneSampler {
	s := &controlPlaneSampler{procs: controlPlaneProcs(), cpu0: map[string]time.Duration{}, peak: map[string]int64{},
		stop: make(chan struct{}), done: make(chan struct{})}
	for _, p := range s.procs {
		s.cpu0[p.name] += procCPU(p.pid)
	}
	s.sample()
	go func() {
		defer close(s.done)
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
				s.sample()
			}
		}
	}()
	return s
}

func (s *controlPlaneSampler) sample() {
	now := map[string]int64{}
	for _, p := range s.procs {
		now[p.name] += procRSSKB(p.pid)
	}
	s.mu.Lock()
	for k, v := range now {
		s.peak[k] = max(s.peak[k], v)
	}
	s.mu.Unlock()
}

// Stop ends the sampling and returns what was used since the start.
func (s *controlPlaneSampler) Stop() ControlPlaneUse {
	close(s.stop)
	<-s.done
	s.sample()
	u := ControlPlaneUse{CPU: map[string]time.Duration{}, PeakKB: map[string]int64{}}
	for _, p := range s.procs {
		u.CPU[p.name] += procCPU(p.pid)
	}
	for k := range u.CPU {
		u.CPU[k] -= s.cpu0[k]
	}
	s.mu.Lock()
	for k, v := range s.peak {
		u.PeakKB[k] = v
	}
	s.mu.Unlock()
	return u
}

// StoredSize is the size of the Environments as the API server stores them (JSON: etcd
// holds custom resources as JSON), over the deployed Environments of the fleet.
type StoredSize struct {
	Count int
	// Median and largest, in bytes: the whole object, its status, its managedFields.
	Object, Status, ManagedFields int
	MaxObject, MaxStatus          int
	History, MaxHistory           int // status.history entries: median, largest
	TotalObjects                  int // sum of the objects' sizes
}

// storedSizes lists the Environments of ns named in names from the API server and measures
// their JSON.
func storedSizes(ctx context.Context, k8s client.Client, ns string, names map[string]bool) (StoredSize, error) {
	var objs, stats, mfs, hist []int
	var total int
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(schema.GroupVersionKind{Group: "deploy.autodeploy.dev", Version: "v1alpha1", Kind: "EnvironmentList"})
	opts := []client.ListOption{client.InNamespace(ns), client.Limit(500)}
	for {
		if err := k8s.List(ctx, list, opts...); err != nil {
			return StoredSize{}, err
		}
		for _, it := range list.Items {
			if !names[it.GetName()] {
				continue
			}
			raw, err := json.Marshal(it.Object)
			if err != nil {
				return StoredSize{}, err
			}
			st, _ := json.Marshal(it.Object["status"])
			mf, _ := json.Marshal(it.GetManagedFields())
			h, _, _ := unstructured.NestedSlice(it.Object, "status", "history")
			objs, stats, mfs, hist = append(objs, len(raw)), append(stats, len(st)), append(mfs, len(mf)), append(hist, len(h))
			total += len(raw)
		}
		if list.GetContinue() == "" {
			break
		}
		opts = []client.ListOption{client.InNamespace(ns), client.Limit(500), client.Continue(list.GetContinue())}
	}
	if len(objs) == 0 {
		return StoredSize{}, nil
	}
	med := func(v []int) int { s := slices.Clone(v); slices.Sort(s); return s[len(s)/2] }
	s := StoredSize{Count: len(objs), Object: med(objs), Status: med(stats), ManagedFields: med(mfs), History: med(hist),
		MaxObject: slices.Max(objs), MaxStatus: slices.Max(stats), MaxHistory: slices.Max(hist), TotalObjects: total}
	return s, nil
}
