package bench

import (
	"encoding/json"
	"math"
	"os"
	"runtime"
	"runtime/metrics"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/autodeploy-dev/autodeploy/internal/ecssim"
)

// call is one observed AWS call.
type call struct {
	t       time.Time
	account string
	op      string
	err     string
	// for successful UpdateService calls
	cluster, service, taskDef string
}

// recorder keeps every AWS call the simulator observed while on.
type recorder struct {
	on    atomic.Bool
	mu    sync.Mutex
	calls []call
}

func (r *recorder) observe(c ecssim.Call) {
	if !r.on.Load() {
		return
	}
	rc := call{t: c.Time, account: c.Account, op: c.Operation, err: c.ErrorCode}
	if c.Operation == "UpdateService" && c.ErrorCode == "" {
		var req struct {
			Cluster, Service, TaskDefinition string
		}
		if json.Unmarshal(c.Body, &req) == nil {
			rc.cluster, rc.service, rc.taskDef = req.Cluster, req.Service, req.TaskDefinition
		}
	}
	r.mu.Lock()
	r.calls = append(r.calls, rc)
	r.mu.Unlock()
}

func (r *recorder) snapshot() []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]call(nil), r.calls...)
}

// totalCalls is the number of wire calls the simulator handled, over all accounts.
func totalCalls(sim *ecssim.Server) int {
	n := 0
	for _, id := range sim.Accounts() {
		n += sim.Account(id).TotalCalls()
	}
	return n
}

// resetCalls zeroes the simulator's counters in every account.
func resetCalls(sim *ecssim.Server) {
	for _, id := range sim.Accounts() {
		sim.Account(id).ResetCalls()
	}
}

// window counts the calls and throttles in [from, to).
func window(calls []call, from, to time.Time) (n, throttled int) {
	for _, c := range calls {
		if c.t.Before(from) || !c.t.Before(to) {
			continue
		}
		n++
		if c.err == "ThrottlingException" {
			throttled++
		}
	}
	return n, throttled
}

// update is a successful UpdateService with the image it deployed.
type update struct {
	t     time.Time
	env   int
	image string
}

// images caches the image of task-definition revisions (account|ARN -> image).
type images map[string]string

// updates resolves the image of every successful UpdateService, through cache.
func updates(calls []call, sim *ecssim.Server, f *fleet, cache images) []update {
	var out []update
	for _, c := range calls {
		if c.op != "UpdateService" || c.err != "" || c.taskDef == "" {
			continue
		}
		i, ok := f.byService[serviceKey(c.account, lastSegment(c.cluster), lastSegment(c.service))]
		if !ok {
			continue
		}
		img, ok := cache[c.account+"|"+c.taskDef]
		if !ok {
			img = imageOf(sim.Account(c.account), c.taskDef)
			cache[c.account+"|"+c.taskDef] = img
		}
		out = append(out, update{t: c.t, env: i, image: img})
	}
	return out
}

// lastSegment is the name in a cluster or service reference (a name or an ARN).
func lastSegment(ref string) string { return ref[strings.LastIndex(ref, "/")+1:] }

func imageOf(sim *ecssim.AccountView, td string) string {
	doc, ok := sim.TaskDefinition(td)
	if !ok {
		return ""
	}
	cds, _ := doc["containerDefinitions"].([]any)
	for _, cd := range cds {
		m, _ := cd.(map[string]any)
		if m["name"] == container {
			s, _ := m["image"].(string)
			return s
		}
	}
	return ""
}

// published is a build with the real time it was published.
type published struct {
	build
	t time.Time
}

// outcome is what the deploys of a run achieved.
type outcome struct {
	Published, Deployed int
	// Superseded: builds not deployed everywhere because a newer build of the same
	// application replaced them before they reached every Environment, and that newer build
	// was deployed everywhere (deploying the newest build is the intent); Lost: the others.
	Superseded, Lost int
	// PairLatency: build published -> UpdateService on one Environment (simulated time).
	PairLatency []time.Duration
	// FanoutLatency: build published -> UpdateService on the last unpinned Environment.
	FanoutLatency []time.Duration
	// Reverted: pinned Environments whose service was moved off the pin.
	Reverted int
	// Updates: successful UpdateService calls.
	Updates int
}

// analyse matches builds to UpdateService calls. A build is deployed when its image was
// deployed on every unpinned Environment of its application at or after it was published.
func analyse(f *fleet, builds []published, ups []update, speed float64) outcome {
	o := outcome{Published: len(builds), Updates: len(ups)}
	done := map[build]bool{}
	newest := map[string]int64{}
	byEnv := map[int][]update{}
	for _, u := range ups {
		byEnv[u.env] = append(byEnv[u.env], u)
	}
	for _, b := range builds {
		all := true
		var last time.Duration
		for _, i := range f.unpinnedOf(b.App) {
			found := false
			for _, u := range byEnv[i] {
				if u.image == b.Image && !u.t.Before(b.t) {
					d := simDur(u.t.Sub(b.t), speed)
					o.PairLatency = append(o.PairLatency, d)
					last = max(last, d)
					found = true
					break
				}
			}
			all = all && found
		}
		if all {
			o.Deployed++
			o.FanoutLatency = append(o.FanoutLatency, last)
			done[b.build] = true
			newest[b.App] = max(newest[b.App], b.Number)
		}
	}
	for _, b := range builds {
		switch {
		case done[b.build]:
		case newest[b.App] > b.Number:
			o.Superseded++ // a newer build of its application was deployed everywhere
		default:
			o.Lost++
		}
	}
	for i, e := range f.Envs {
		if !e.Pinned {
			continue
		}
		pin := e.initialImage()
		for _, u := range byEnv[i] {
			if u.image != pin {
				o.Reverted++
				break
			}
		}
	}
	return o
}

func simDur(real time.Duration, speed float64) time.Duration {
	return time.Duration(float64(real) * speed)
}

func percentile(ds []time.Duration, p float64) (time.Duration, bool) {
	if len(ds) == 0 {
		return 0, false
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	idx := int(math.Ceil(p*float64(len(s)))) - 1
	return s[min(max(idx, 0), len(s)-1)], true
}

// usage is the benchmark process's CPU time and the CPU time of its other running child
// processes (kube-apiserver and etcd; the systems' processes are excluded).
type usage struct {
	cpu, children time.Duration
}

func readUsage(exclude ...int) usage {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return usage{cpu: tv(ru.Utime) + tv(ru.Stime), children: childCPU(exclude)}
}

func tv(t syscall.Timeval) time.Duration {
	return time.Duration(t.Sec)*time.Second + time.Duration(t.Usec)*time.Microsecond
}

// procStat returns the fields of /proc/<pid>/stat after the command name (fields[0] is the
// state, field 3).
func procStat(pid int) []string {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil
	}
	s := string(raw)
	j := strings.LastIndexByte(s, ')')
	if j < 0 {
		return nil
	}
	if f := strings.Fields(s[j+1:]); len(f) >= 13 {
		return f
	}
	return nil
}

// statCPU is utime + stime of a procStat.
func statCPU(fields []string) time.Duration {
	ut, _ := strconv.ParseInt(fields[11], 10, 64)
	st, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

// procCPU is the CPU time (user + system) of process pid so far.
func procCPU(pid int) time.Duration {
	if f := procStat(pid); f != nil {
		return statCPU(f)
	}
	return 0
}

// ChildCPU is the CPU time (user + system) of the running children of this process (an
// envtest's kube-apiserver and etcd), for benchmarks that measure the control plane's cost.
func ChildCPU() time.Duration { return childCPU(nil) }

// childCPU sums the CPU time of the running children of this process, except exclude.
func childCPU(exclude []int) time.Duration {
	self := os.Getpid()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	var total time.Duration
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || slices.Contains(exclude, pid) {
			continue
		}
		f := procStat(pid)
		if f == nil {
			continue
		}
		if ppid, _ := strconv.Atoi(f[1]); ppid != self {
			continue
		}
		total += statCPU(f)
	}
	return total
}

// heapSampler records the peak of live Go heap objects (runtime/metrics
// /memory/classes/heap/objects:bytes) until stopped.
type heapSampler struct {
	stop chan struct{}
	done chan struct{}
	peak atomic.Uint64
}

func heapInUse() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func startHeapSampler() *heapSampler {
	runtime.GC()
	h := &heapSampler{stop: make(chan struct{}), done: make(chan struct{})}
	h.peak.Store(heapInUse())
	go func() {
		defer close(h.done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-h.stop:
				return
			case <-t.C:
				h.peak.Store(max(h.peak.Load(), heapInUse()))
			}
		}
	}()
	return h
}

func (h *heapSampler) Stop() {
	close(h.stop)
	<-h.done
}

// procPeakRSSKB returns the peak RSS (VmHWM) of process pid in KiB; 0 if unknown.
func procPeakRSSKB(pid int) int64 { return procStatusKB(pid, "VmHWM:") }

// procStatusKB returns a field of /proc/<pid>/status counted in kB ("VmHWM:", "VmRSS:"); 0
// if unknown.
func procStatusKB(pid int, field string) int64 {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == field {
			v, _ := strconv.ParseInt(f[1], 10, 64)
			return v
		}
	}
	return 0
}
