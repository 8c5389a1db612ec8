package app_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/ecssim"
	"github.com/autodeploy-dev/autodeploy/internal/manifest"
	"github.com/autodeploy-dev/autodeploy/internal/receiver"
)

// apiServerOutage is how long the drill takes the kube-apiserver away, in real time: long
// enough for the leader to lose its lease (renew deadline 10 s). AUTODEPLOY_DRILL_OUTAGE (a Go
// duration) sets another length: `make drill-outage` runs it with 5m.
const apiServerOutage = 20 * time.Second

// The drill's CI sender: a new build every senderPace, each retried every senderBackoff on a
// 5xx or a connection error until it is acknowledged with a 2xx; drillBuilds builds in all,
// the outage beginning once outageAfterBuild of them are acknowledged.
const (
	senderPace       = time.Second
	senderBackoff    = 200 * time.Millisecond
	drillBuilds      = 8
	outageAfterBuild = 3
	// recoveryTimeout bounds each wait after the API server is back, with room for a busy
	// machine (the deploys are measured, not bounded, by it).
	recoveryTimeout = 3 * time.Minute
	// leaderExitBy is how far into an outage a manager run with --leader-elect and the default
	// lease flags (renew deadline 10 s, retry period 2 s) has given up its leadership, with
	// room for a busy machine.
	leaderExitBy = 20 * time.Second
	// relistBound bounds when the informers of a manager that lived through the outage list
	// afresh after the API server is back: half of the shortest wait client-go's reflector
	// backoff has reached after an outage of a minute ([30 s, 60 s)). Waiting for the API
	// server's /readyz (package kubeapi) relists them in about a second.
	relistBound = 15 * time.Second
	// deployTarget is the deploy delay autodeploy aims at for a build recorded after the API
	// server is back; the drill measures and reports it.
	deployTarget = 5 * time.Second
)

func drillOutage(t *testing.T) time.Duration {
	t.Helper()
	v := os.Getenv("AUTODEPLOY_DRILL_OUTAGE")
	if v == "" {
		return apiServerOutage
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("AUTODEPLOY_DRILL_OUTAGE=%q: want a positive duration such as 10s", v)
	}
	return d
}

// auditPolicy logs, with their bodies, the writes to Environment statuses: the API server's
// own record of what it stored, independent of what the receiver answered. It also logs the
// lists and watches of Environments, to tell when the manager's informer came back.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: RequestResponse
  verbs: ["patch", "update"]
  resources:
  - group: deploy.autodeploy.dev
    resources: ["environments/status"]
- level: Metadata
  verbs: ["list", "watch"]
  resources:
  - group: deploy.autodeploy.dev
    resources: ["environments"]
- level: None
`

// ownControlPlane is an envtest control plane of the test's own (etcd and kube-apiserver),
// so that the test can stop its API server without disturbing the tests that share the
// suite's.
type ownControlPlane struct {
	env      *envtest.Environment
	cfg      *rest.Config
	client   client.Client
	auditLog string
	log      *lockedBuffer // kube-apiserver's output
}

func startOwnControlPlane(h *harness) *ownControlPlane {
	h.t.Helper()
	g := h.g
	dir := h.t.TempDir()
	// The API server keeps its serving certificates, its client CA and its port across a
	// restart only if the certificate directory is ours: envtest deletes a directory it
	// created when the API server stops, and the restarted one would make new certificates
	// the manager's kubeconfig does not trust.
	certDir := filepath.Join(dir, "apiserver")
	g.Expect(os.Mkdir(certDir, 0o700)).To(Succeed())
	policy := filepath.Join(dir, "audit-policy.yaml")
	g.Expect(os.WriteFile(policy, []byte(auditPolicy), 0o600)).To(Succeed())
	cp := &ownControlPlane{auditLog: filepath.Join(dir, "audit.log")}
	cp.log = &lockedBuffer{}
	api := &envtest.APIServer{CertDir: certDir, Out: cp.log, Err: cp.log}
	api.Configure().Set("audit-policy-file", policy).Set("audit-log-path", cp.auditLog).
		// Without it, a stopping kube-apiserver stops listening at once but then waits up to
		// --request-timeout (60 s) for the open watches (the manager's) before it exits, past
		// envtest's stop timeout. With it, it answers 429 with Retry-After while the requests
		// in flight drain, then gives the watches 2 s: the graceful stop of an API server
		// behind a load balancer.
		Set("shutdown-send-retry-after", "true")
	cp.env = &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		ControlPlane:          envtest.ControlPlane{APIServer: api},
	}
	cfg, err := cp.env.Start()
	g.Expect(err).NotTo(HaveOccurred(), "starting the drill's own envtest")
	h.t.Cleanup(func() {
		if err := cp.env.Stop(); err != nil {
			h.t.Logf("stopping the drill's envtest: %v", err)
		}
	})
	cp.cfg = cfg
	cp.client, err = client.New(cfg, client.Options{Scheme: scheme})
	g.Expect(err).NotTo(HaveOccurred())
	return cp
}

func (cp *ownControlPlane) apiServerURL() string {
	return cp.env.ControlPlane.APIServer.SecureServing.URL("https", "/").String()
}

// stopAPIServer stops kube-apiserver (SIGTERM, then waits for it to exit); etcd keeps running.
func (cp *ownControlPlane) stopAPIServer() error {
	return cp.env.ControlPlane.APIServer.Stop()
}

// startAPIServer starts kube-apiserver again, on the same port with the same certificates and
// the same etcd, and waits until it answers /healthz.
func (cp *ownControlPlane) startAPIServer() error {
	return cp.env.ControlPlane.APIServer.Start()
}

func (cp *ownControlPlane) envGetter(ns, name string) func() *deployv1.Environment {
	return func() *deployv1.Environment {
		env := &deployv1.Environment{}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := cp.client.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, env); err != nil {
			return nil
		}
		return env
	}
}

// auditEvent is the part of an audit log entry the drill reads.
type auditEvent struct {
	Stage      string `json:"stage"`
	Verb       string `json:"verb"`
	RequestURI string `json:"requestURI"`
	UserAgent  string `json:"userAgent"`
	ObjectRef  struct {
		Namespace   string `json:"namespace"`
		Name        string `json:"name"`
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
	} `json:"objectRef"`
	ResponseStatus struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
	RequestObject struct {
		Status struct {
			LatestBuild *struct {
				ID string `json:"id"`
			} `json:"latestBuild"`
		} `json:"status"`
	} `json:"requestObject"`
	RequestReceivedTimestamp time.Time `json:"requestReceivedTimestamp"`
}

func (cp *ownControlPlane) audit() ([]auditEvent, error) {
	f, err := os.Open(cp.auditLog)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []auditEvent
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 1<<20), 16<<20)
	for sc.Scan() {
		var ev auditEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return nil, fmt.Errorf("audit log line %q: %w", sc.Text(), err)
		}
		out = append(out, ev)
	}
	return out, sc.Err()
}

// statusWrite is one Environment status write the API server accepted.
type statusWrite struct {
	env      string // name
	buildID  string // status.latestBuild.id the write set; "" for writes that did not set it
	received time.Time
}

// acceptedStatusWrites returns the status writes to Environments of ns that the API server
// answered with a 2xx, from its audit log.
func acceptedStatusWrites(events []auditEvent, ns string) []statusWrite {
	var out []statusWrite
	for _, ev := range events {
		if ev.Stage != "ResponseComplete" || ev.ObjectRef.Namespace != ns || ev.ObjectRef.Resource != "environments" ||
			ev.ObjectRef.Subresource != "status" || ev.ResponseStatus.Code/100 != 2 {
			continue
		}
		w := statusWrite{env: ev.ObjectRef.Name, received: ev.RequestReceivedTimestamp}
		if lb := ev.RequestObject.Status.LatestBuild; lb != nil {
			w.buildID = lb.ID
		}
		out = append(out, w)
	}
	return out
}

// informerRelisted returns when the Environment informer of a manager whose user agent begins
// with agent ("manager/") first listed Environments afresh (a list, or a watch that starts
// with the current state) after since; zero if it did not. A watch resumed from an older
// resource version does not count: the API server logs a watch when it ends, and a restarted
// API server ends those at once (resource version too old).
func informerRelisted(events []auditEvent, agent string, since time.Time) time.Time {
	for _, ev := range events {
		fresh := ev.Verb == "list" || (ev.Verb == "watch" && strings.Contains(ev.RequestURI, "sendInitialEvents=true"))
		if fresh && ev.ObjectRef.Resource == "environments" && strings.HasPrefix(ev.UserAgent, agent) &&
			ev.ResponseStatus.Code/100 == 2 && ev.RequestReceivedTimestamp.After(since) {
			return ev.RequestReceivedTimestamp
		}
	}
	return time.Time{}
}

// drillAttempt is one request of the drill's sender and the receiver's answer.
type drillAttempt struct {
	build      int64
	start, end time.Time
	code       int // 0: no answer (connection error, timeout)
	retryAfter string
	result     string   // the receiver's result
	envs       []string // the Environments it said recorded the build, or already had it
	err        string
}

// drillSender posts builds 1..n of shop-api to the receiver as a CI sender does.
type drillSender struct {
	url    string
	client *http.Client

	mu       sync.Mutex
	attempts []drillAttempt
	acked    map[int64]drillAttempt // build -> the 2xx answer
}

func newDrillSender(receiverURL string) *drillSender {
	return &drillSender{
		url:    receiverURL + receiver.ManifestPath,
		client: &http.Client{Timeout: 10 * time.Second},
		acked:  map[int64]drillAttempt{},
	}
}

// run sends builds 1..n, one every senderPace (a build that took longer to get through is
// followed at once by the next), each retried every senderBackoff until it is answered 2xx.
// It reports nil when all are acknowledged, or why it gave up.
func (s *drillSender) run(ctx context.Context, n int64, done chan<- error) {
	pace := time.NewTicker(senderPace)
	defer pace.Stop()
	for b := int64(1); b <= n; b++ {
		if b > 1 {
			select {
			case <-ctx.Done():
				done <- ctx.Err()
				return
			case <-pace.C:
			}
		}
		for {
			a := s.send(ctx, newBuild(b))
			s.mu.Lock()
			s.attempts = append(s.attempts, a)
			if a.code/100 == 2 {
				s.acked[b] = a
			}
			s.mu.Unlock()
			if a.code/100 == 2 {
				break
			}
			if a.code != 0 && a.code < 500 {
				done <- fmt.Errorf("build %d answered %d (%s): a sender does not retry that", b, a.code, a.err)
				return
			}
			select {
			case <-ctx.Done():
				done <- ctx.Err()
				return
			case <-time.After(senderBackoff): // the sender's backoff, not synchronisation
			}
		}
	}
	done <- nil
}

// send signs the build now and posts it once.
func (s *drillSender) send(ctx context.Context, b build) drillAttempt {
	a := drillAttempt{build: b.Number, start: time.Now()}
	defer func() { a.end = time.Now() }()
	body := b.body()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		a.err = err.Error()
		return a
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(manifest.TimestampHeader, strconv.FormatInt(a.start.Unix(), 10))
	req.Header.Set(manifest.SignatureHeader, manifest.Sign(testKey, a.start, body))
	resp, err := s.client.Do(req)
	if err != nil {
		a.err = err.Error()
		a.end = time.Now()
		return a
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a.end = time.Now()
	a.code, a.retryAfter = resp.StatusCode, resp.Header.Get("Retry-After")
	var r receiver.Response
	if err := json.Unmarshal(raw, &r); err != nil {
		a.err = fmt.Sprintf("undecodable answer %q: %v", raw, err)
		return a
	}
	a.result, a.err = r.Result, r.Error
	a.envs = append(append(a.envs, r.Updated...), r.Duplicate...)
	return a
}

func (s *drillSender) ackedCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.acked)
}

// between returns the attempts sent and answered within [from, to).
func (s *drillSender) between(from, to time.Time) []drillAttempt {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []drillAttempt
	for _, a := range s.attempts {
		if !a.start.Before(from) && a.end.Before(to) {
			out = append(out, a)
		}
	}
	return out
}

func (s *drillSender) ackedBuilds() map[int64]drillAttempt {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[int64]drillAttempt, len(s.acked))
	for b, a := range s.acked {
		out[b] = a
	}
	return out
}

// codeCounts sums up attempts by answer: "503 x41", "0 x2" (no answer).
func codeCounts(attempts []drillAttempt) string {
	n := map[int]int{}
	for _, a := range attempts {
		n[a.code]++
	}
	codes := make([]int, 0, len(n))
	for c := range n {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	parts := make([]string, 0, len(codes))
	for _, c := range codes {
		parts = append(parts, fmt.Sprintf("%d x%d", c, n[c]))
	}
	return strings.Join(parts, ", ")
}

// pinnedWatch records the ECS calls that would change the pinned service.
type pinnedWatch struct {
	service, family string
	mu              sync.Mutex
	calls           []string
}

func (w *pinnedWatch) observe(c ecssim.Call) {
	if c.Operation != "UpdateService" && c.Operation != "RegisterTaskDefinition" {
		return
	}
	var req struct {
		Service string `json:"service"`
		Family  string `json:"family"`
	}
	if json.Unmarshal(c.Body, &req) != nil {
		return
	}
	if req.Service == w.service || strings.HasSuffix(req.Service, "/"+w.service) || req.Family == w.family {
		w.mu.Lock()
		w.calls = append(w.calls, c.Operation+" "+string(c.Body))
		w.mu.Unlock()
	}
}

func (w *pinnedWatch) seen() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.calls...)
}

// deployWatch records when the ECS simulator was asked to deploy which build to one service:
// each UpdateService of the service after a RegisterTaskDefinition of its family.
type deployWatch struct {
	service, family string
	mu              sync.Mutex
	registered      int64 // build number of the family's last registered image
	deploys         []deployCall
}

type deployCall struct {
	build int64
	at    time.Time
}

func (w *deployWatch) observe(c ecssim.Call) {
	if c.ErrorCode != "" || (c.Operation != "UpdateService" && c.Operation != "RegisterTaskDefinition") {
		return
	}
	var req struct {
		Service string `json:"service"`
		Family  string `json:"family"`
	}
	if json.Unmarshal(c.Body, &req) != nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case c.Operation == "RegisterTaskDefinition" && req.Family == w.family:
		// The image is the build's: image("b<n>").
		if i := bytes.Index(c.Body, []byte(image("b"))); i >= 0 {
			rest := c.Body[i+len(image("b")):]
			j := bytes.IndexByte(rest, '"')
			if n, err := strconv.ParseInt(string(rest[:max(j, 0)]), 10, 64); err == nil {
				w.registered = n
			}
		}
	case c.Operation == "UpdateService" && (req.Service == w.service || strings.HasSuffix(req.Service, "/"+w.service)) && w.registered > 0:
		w.deploys = append(w.deploys, deployCall{build: w.registered, at: c.Time})
	}
}

// deployedAt returns when build n (or a newer build, which supersedes it) was first deployed
// at or after since; zero if it was not.
func (w *deployWatch) deployedAt(n int64, since time.Time) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, d := range w.deploys {
		if d.build >= n && !d.at.Before(since) {
			return d.at
		}
	}
	return time.Time{}
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr(h *harness) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	h.g.Expect(err).NotTo(HaveOccurred())
	defer ln.Close()
	return ln.Addr().String()
}

// probeCode asks a manager's probe endpoint (/healthz, /readyz); 0 when it does not answer.
func probeCode(addr, path string) int {
	c := &http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// asReplica returns a fixture whose managers run the same binary under the name "replica",
// which their Kubernetes user agent then begins with, to tell their requests in the audit log
// from those of the fixture's other managers.
func (f *processFixture) asReplica() *processFixture {
	f.h.t.Helper()
	link := filepath.Join(f.h.t.TempDir(), "replica")
	f.h.g.Expect(os.Symlink(f.bin, link)).To(Succeed())
	r := *f
	r.bin = link
	return &r
}

// TestDrillAPIServerOutageRealProcessLosesNothing takes the kube-apiserver away for
// apiServerOutage while a CI sender posts a stream of builds to the manager, run as in
// config/manager: two replicas, each its own process with --leader-elect and the default lease
// flags, against an envtest control plane of the test's own. The API server is stopped and
// started again on the same port, with the same certificates and etcd.
//
// Through the outage neither process exits and both stay live (/healthz answers 200) and
// unready (/readyz does not): a pod would be neither restarted by its liveness probe nor sent
// builds by its Service. The leader cannot renew its lease; it stops reconciling and replaces
// its manager in the same process ("starting a new manager in this process"), which waits for
// the API server. The other replica keeps its manager; its receiver (the sender's) turns every
// manifest away with a 503 (never a 2xx) and the sender retries.
//
// Once the API server is back both are ready again; the informers of the replica that lived
// through it list afresh within relistBound (they waited for the API server's /readyz, not
// for client-go's backoff), and the drill reports, per build recorded after the return, how
// long it took to be deployed (deployTarget is the aim). Every build the receiver acknowledged
// was stored exactly once before it was acknowledged (the API server's audit log says so), the
// Environment follows the last build and its service runs it, no image was registered twice,
// and the pinned Environment's service was never touched.
func TestDrillAPIServerOutageRealProcessLosesNothing(t *testing.T) {
	outage := drillOutage(t)
	began := time.Now()
	pinned := &pinnedWatch{service: "pinned", family: "prod-pinned"}
	deploys := &deployWatch{service: "shop-api"}
	h := newHarness(t, withSim(ecssim.WithRolloutDuration(200*time.Millisecond),
		ecssim.WithCallObserver(func(c ecssim.Call) { pinned.observe(c); deploys.observe(c) })))
	g := h.g
	cp := startOwnControlPlane(h)
	t.Logf("own envtest up at %s in %s", cp.apiServerURL(), time.Since(began).Round(time.Millisecond))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	g.Expect(cp.client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: h.ns}})).To(Succeed())
	family := h.seedService("prod", "shop-api", image("v1"))
	deploys.mu.Lock()
	deploys.family = family
	deploys.mu.Unlock()
	h.seedService("prod", "pinned", image("v1"))
	for _, env := range []*deployv1.Environment{
		{ObjectMeta: metav1.ObjectMeta{Name: "prod", Namespace: h.ns}, Spec: deployv1.EnvironmentSpec{
			Application: "shop-api", Branch: "main", AutoDeploy: true,
			ECS: deployv1.ECSTarget{Region: "us-east-1", Cluster: "prod", Service: "shop-api", Container: "web"},
		}},
		{ObjectMeta: metav1.ObjectMeta{Name: "pinned", Namespace: h.ns}, Spec: deployv1.EnvironmentSpec{
			Application: "shop-api", Branch: "main", AutoDeploy: true, PinnedImage: image("v1"),
			ECS: deployv1.ECSTarget{Region: "us-east-1", Cluster: "prod", Service: "pinned", Container: "web"},
		}},
	} {
		g.Expect(cp.client.Create(ctx, env)).To(Succeed())
	}

	// The two replicas of config/manager. The leader starts first and takes the lease.
	f := newProcessFixtureFor(h, cp.cfg)
	le := []string{"--leader-elect", "--leader-election-namespace=" + h.ns}
	leaderProbes, replicaProbes := freeAddr(h), freeAddr(h)
	leader := f.start(append(le, "--health-probe-bind-address="+leaderProbes)...)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("leader log (%s):\n%s", leader.exitStatus(), tail(leader.log.String(), 150))
			t.Logf("kube-apiserver log:\n%s", tail(cp.log.String(), 60))
		}
	})
	g.Eventually(leader.log.String, timeout, poll).Should(ContainSubstring("Successfully acquired lease"))
	p := f.asReplica().start(append(le, "--health-probe-bind-address="+replicaProbes)...)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("replica log (%s):\n%s", p.exitStatus(), tail(p.log.String(), 150))
		}
	})
	procs := map[string]*managerProcess{"leader": leader, "replica": p}
	probeAddrs := map[string]string{"leader": leaderProbes, "replica": replicaProbes}
	for name, addr := range probeAddrs {
		g.Eventually(func() int { return probeCode(addr, "/readyz") }, timeout, poll).Should(Equal(http.StatusOK), "%s is not ready", name)
	}

	s := newDrillSender(p.receiverURL)
	sent := make(chan error, 1)
	go s.run(ctx, drillBuilds, sent)

	// Mid-stream: the first builds are through, then the API server goes away.
	g.Eventually(s.ackedCount, timeout, poll).Should(BeNumerically(">=", outageAfterBuild), "the first builds were not acknowledged")
	callsBefore := ecsCalls(h)
	stopping := time.Now()
	g.Expect(cp.stopAPIServer()).To(Succeed())
	down := time.Now()
	t.Logf("kube-apiserver stopped in %s, after %d builds acknowledged", down.Sub(stopping).Round(time.Millisecond), s.ackedCount())
	if c, err := net.Dial("tcp", cp.env.ControlPlane.APIServer.SecureServing.HostPort()); err == nil {
		c.Close()
		t.Fatal("the API server's port still accepts connections")
	}

	// For the whole outage: both processes run and are live, the sender is turned away with
	// 503s, nothing is acknowledged. (Consistently lasts the outage: that is the fault's length.)
	for name, addr := range probeAddrs {
		g.Eventually(func() int { return probeCode(addr, "/readyz") }, timeout, poll).ShouldNot(Equal(http.StatusOK),
			"%s stayed ready without an API server", name)
	}
	t.Logf("both replicas unready %s into the outage", time.Since(down).Round(time.Millisecond))
	g.Eventually(func() []drillAttempt { return s.between(down, time.Now()) }, timeout, poll).ShouldNot(BeEmpty(),
		"the sender got no answer in the outage")
	outageCheck := func() error {
		for name, proc := range procs {
			if !proc.running() {
				return fmt.Errorf("the %s process exited during the outage: %s", name, proc.exitStatus())
			}
			if code := probeCode(probeAddrs[name], "/healthz"); code != http.StatusOK {
				return fmt.Errorf("the %s's /healthz answered %d during the outage: a liveness probe would restart it", name, code)
			}
		}
		for _, a := range s.between(down, time.Now()) {
			if a.code/100 == 2 {
				return fmt.Errorf("build %d acknowledged (%d %s) while the API server was down", a.build, a.code, a.result)
			}
		}
		return nil
	}
	if outage >= leaderExitBy {
		g.Eventually(func() error {
			if err := outageCheck(); err != nil {
				return StopTrying(err.Error())
			}
			if !strings.Contains(leader.log.String(), "starting a new manager in this process") {
				return errors.New("the leader has not replaced its manager")
			}
			return nil
		}, leaderExitBy, poll).Should(Succeed())
		g.Expect(leader.running()).To(BeTrue())
		t.Logf("the leader lost its lease and replaced its manager in-process %s into the outage", time.Since(down).Round(time.Second))
	} else {
		t.Logf("an outage of %s is too short to see the leader lose its lease", outage)
	}
	g.Consistently(outageCheck, time.Until(down.Add(outage)), 200*time.Millisecond).Should(Succeed())

	restarting := time.Now()
	during := s.between(down, restarting)
	callsDuring := ecsCalls(h)
	g.Expect(cp.startAPIServer()).To(Succeed(), "restarting kube-apiserver on %s", cp.apiServerURL())
	up := time.Now()
	t.Logf("kube-apiserver away %s (outage %s), back in %s; the receiver answered in the outage: %s",
		restarting.Sub(down).Round(time.Millisecond), outage, up.Sub(restarting).Round(time.Millisecond), codeCounts(during))
	t.Logf("ECS calls while the API server was away: %s", ecsCallDelta(callsBefore, callsDuring))
	g.Expect(cp.apiServerURL()).To(Equal(cp.cfg.Host), "the API server came back where the kubeconfig points")
	g.Expect(during).NotTo(BeEmpty())
	for _, a := range during {
		g.Expect(a.code).To(Equal(http.StatusServiceUnavailable), "build %d in the outage: %d %s", a.build, a.code, a.err)
		g.Expect(a.retryAfter).NotTo(BeEmpty(), "a 503 says when to retry")
		g.Expect(a.err).To(ContainSubstring("retry"))
	}
	for name, addr := range probeAddrs {
		g.Eventually(func() int { return probeCode(addr, "/readyz") }, recoveryTimeout, poll).Should(Equal(http.StatusOK),
			"%s is not ready after the API server came back", name)
		t.Logf("%s ready %s after the API server came back", name, time.Since(up).Round(time.Millisecond))
	}

	// After the outage the stream finishes.
	g.Eventually(sent, recoveryTimeout, poll).Should(Receive(BeNil()), "the sender did not get every build through")
	last := newBuild(drillBuilds)
	t.Logf("all %d builds acknowledged %s after the API server came back", drillBuilds, time.Since(up).Round(time.Millisecond))

	prod, pin := cp.envGetter(h.ns, "prod"), cp.envGetter(h.ns, "pinned")
	g.Eventually(prod, recoveryTimeout, poll).Should(And(
		WithTransform(latestNumber, Equal(last.Number)),
		WithTransform(deployedImage, Equal(last.Image)),
		WithTransform(rolloutResult, Equal(deployv1.ResultCompleted))), "prod does not run the last build")
	t.Logf("prod runs build %d, %s after the API server came back", last.Number, time.Since(up).Round(time.Millisecond))
	g.Expect(h.webImage("prod", "shop-api")).To(Equal(last.Image))
	images := h.revisionImages(family)
	seen := map[string]bool{}
	for _, img := range images {
		g.Expect(seen[img]).To(BeFalse(), "%s registered twice: %v", img, images)
		seen[img] = true
	}
	g.Expect(images[len(images)-1]).To(Equal(last.Image))

	g.Eventually(pin, recoveryTimeout, poll).Should(WithTransform(latestNumber, Equal(last.Number)))
	g.Expect(pinned.seen()).To(BeEmpty(), "the pinned service was changed")
	g.Expect(h.revisionImages("prod-pinned")).To(Equal([]string{image("v1")}))
	g.Expect(h.webImage("prod", "pinned")).To(Equal(image("v1")))
	pinnedEnv := pin()
	g.Expect(pinnedEnv).NotTo(BeNil())
	g.Expect(pinnedEnv.Status.DeployedImage).To(Or(BeEmpty(), Equal(image("v1"))))

	// The API server's audit log: every build was written once to each Environment, and its
	// write was received before the receiver acknowledged it.
	events, err := cp.audit()
	g.Expect(err).NotTo(HaveOccurred())
	for name, agent := range map[string]string{"leader": "manager/", "replica": "replica/"} {
		// The API server answers before its start is over (up): a manager may list in
		// between, so the list is looked for from the moment it was started again.
		relisted := informerRelisted(events, agent, restarting)
		g.Expect(relisted).NotTo(BeZero(), "the %s's Environment informer did not list afresh after the API server came back", name)
		t.Logf("the %s's Environment informer listed afresh %s after the API server came back (negative: while it finished starting)", name, relisted.Sub(up).Round(time.Millisecond))
		if name == "replica" {
			g.Expect(relisted.Sub(up)).To(BeNumerically("<", relistBound),
				"the replica's informer waited out a backoff instead of the API server's /readyz")
		}
	}
	g.Expect(p.log.String()).To(ContainSubstring("The Kubernetes API server is back; list and watch resume"))
	writes := acceptedStatusWrites(events, h.ns)
	acked := s.ackedBuilds()
	g.Expect(acked).To(HaveLen(drillBuilds))
	var worst time.Duration
	var delays []string
	for n := int64(1); n <= drillBuilds; n++ {
		b, ack := newBuild(n), acked[n]
		g.Expect(ack.envs).To(ConsistOf(h.ns+"/prod", h.ns+"/pinned"), "build %d: %d %s", n, ack.code, ack.result)
		for _, name := range []string{"prod", "pinned"} {
			var stored []statusWrite
			for _, w := range writes {
				if w.env == name && w.buildID == b.ID {
					stored = append(stored, w)
				}
			}
			g.Expect(stored).To(HaveLen(1), "build %d on %s: written once", n, name)
			g.Expect(stored[0].received.Before(ack.end)).To(BeTrue(),
				"build %d on %s was acknowledged (%d %s at %s) before the API server received its write (%s)",
				n, name, ack.code, ack.result, ack.end.Format(time.RFC3339Nano), stored[0].received.Format(time.RFC3339Nano))
			if name == "prod" && stored[0].received.After(up) {
				recorded := stored[0].received
				at := deploys.deployedAt(n, recorded)
				g.Expect(at).NotTo(BeZero(), "build %d, recorded after the API server came back, was not deployed", n)
				d := at.Sub(recorded)
				worst = max(worst, d)
				delays = append(delays, fmt.Sprintf("build %d %s", n, d.Round(time.Millisecond)))
			}
		}
	}
	g.Expect(delays).NotTo(BeEmpty(), "no build was recorded after the API server came back")
	t.Logf("deploy delay of the builds recorded after the API server came back (recorded to UpdateService): %s; worst %s (target %s)",
		strings.Join(delays, ", "), worst.Round(time.Millisecond), deployTarget)
	for name, proc := range procs {
		g.Expect(proc.running()).To(BeTrue(), "the %s process exited: %s", name, proc.exitStatus())
	}
	t.Logf("drill took %s", time.Since(began).Round(time.Millisecond))
}

// TestDrillManagerStartsWhileAPIServerIsDown starts the manager process while the
// kube-apiserver is away, as a pod scheduled during an outage starts (and as a leader that lost
// its lease sets up its next manager, see above). The manager cannot set up without discovery;
// it waits, saying so, rather than exiting (a pod would crash-loop, the kubelet's back-off
// growing past the outage), and meanwhile answers its liveness probe and fails its readiness
// probe. Once the API server is back it comes up: its receiver accepts a build, the Environment
// is deployed, and it is ready.
func TestDrillManagerStartsWhileAPIServerIsDown(t *testing.T) {
	// upTimeout bounds the wait for the manager once the API server is back: its next look
	// is at most about a second away, then it sets up and starts; room for a busy machine.
	const upTimeout = timeout + 15*time.Second
	began := time.Now()
	h := newHarness(t, withSim(ecssim.WithRolloutDuration(200*time.Millisecond)))
	g := h.g
	cp := startOwnControlPlane(h)
	ctx := context.Background()
	g.Expect(cp.client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: h.ns}})).To(Succeed())
	h.seedService("prod", "shop-api", image("v1"))
	g.Expect(cp.client.Create(ctx, &deployv1.Environment{
		ObjectMeta: metav1.ObjectMeta{Name: "prod", Namespace: h.ns},
		Spec: deployv1.EnvironmentSpec{
			Application: "shop-api", Branch: "main", AutoDeploy: true,
			ECS: deployv1.ECSTarget{Region: "us-east-1", Cluster: "prod", Service: "shop-api", Container: "web"},
		},
	})).To(Succeed())
	f := newProcessFixtureFor(h, cp.cfg)

	g.Expect(cp.stopAPIServer()).To(Succeed())
	if c, err := net.Dial("tcp", cp.env.ControlPlane.APIServer.SecureServing.HostPort()); err == nil {
		c.Close()
		t.Fatal("the API server's port still accepts connections")
	}
	probes := freeAddr(h)
	p := f.launch("--health-probe-bind-address=" + probes)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("manager log (%s):\n%s", p.exitStatus(), tail(p.log.String(), 100))
			t.Logf("kube-apiserver log:\n%s", tail(cp.log.String(), 50))
		}
	})
	// While it waits it is live (a liveness probe leaves it alone) and not ready.
	g.Eventually(func() int { return probeCode(probes, "/healthz") }, timeout, poll).Should(Equal(http.StatusOK))
	g.Consistently(func() error {
		if !p.running() {
			return fmt.Errorf("the manager exited while the API server was down: %s", p.exitStatus())
		}
		if code := probeCode(probes, "/healthz"); code != http.StatusOK {
			return fmt.Errorf("/healthz answered %d while the manager waited", code)
		}
		if code := probeCode(probes, "/readyz"); code == http.StatusOK {
			return errors.New("/readyz answered 200 without an API server")
		}
		return nil
	}, 3*time.Second, poll).Should(Succeed())
	g.Eventually(p.log.String, timeout, poll).Should(ContainSubstring("Waiting for the Kubernetes API server"))
	t.Logf("the manager waited for the API server: %d attempts logged",
		strings.Count(p.log.String(), "Waiting for the Kubernetes API server"))

	restarting := time.Now()
	g.Expect(cp.startAPIServer()).To(Succeed(), "restarting kube-apiserver on %s", cp.apiServerURL())
	up := time.Now()
	t.Logf("kube-apiserver back in %s", up.Sub(restarting).Round(time.Millisecond))
	b := newBuild(1)
	g.Eventually(func() int { return p.post(b) }, upTimeout, poll).Should(Equal(http.StatusAccepted),
		"the manager's receiver did not accept a build after the API server came back")
	t.Logf("the receiver accepted a build %s after the API server came back", time.Since(up).Round(time.Millisecond))
	g.Eventually(cp.envGetter(h.ns, "prod"), timeout, poll).Should(And(
		WithTransform(latestNumber, Equal(b.Number)),
		WithTransform(deployedImage, Equal(b.Image)),
		WithTransform(rolloutResult, Equal(deployv1.ResultCompleted))), "prod does not run the build")
	g.Expect(h.webImage("prod", "shop-api")).To(Equal(b.Image))
	g.Eventually(func() int { return probeCode(probes, "/readyz") }, timeout, poll).Should(Equal(http.StatusOK))
	g.Expect(p.running()).To(BeTrue(), "the manager process exited: %s", p.exitStatus())
	t.Logf("drill took %s", time.Since(began).Round(time.Millisecond))
}

func ecsCalls(h *harness) map[string]int {
	out := map[string]int{}
	for _, op := range drillDeployOps {
		out[op] = h.sim.Calls(op)
	}
	return out
}

func ecsCallDelta(before, after map[string]int) string {
	parts := make([]string, 0, len(drillDeployOps))
	for _, op := range drillDeployOps {
		parts = append(parts, fmt.Sprintf("%s +%d", op, after[op]-before[op]))
	}
	return strings.Join(parts, ", ")
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
