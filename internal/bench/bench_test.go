package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	. "github.com/onsi/gomega"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// TestMain lets the test binary act as a system's process: the benchmark starts its own
// executable again with ChildArg.
func TestMain(m *testing.M) {
	ctrl.SetLogger(logr.Discard())
	if len(os.Args) > 1 && os.Args[1] == ChildArg {
		ctx, cancel := signalContext()
		defer cancel()
		if err := RunChild(ctx, os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestParseRuns(t *testing.T) {
	g := NewWithT(t)
	runs, err := ParseRuns("100, 1000@15,10000@5/10,50/3", 60, 1)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(runs).To(Equal([]RunSpec{
		{N: 100, Speed: 60, Accounts: 1},
		{N: 1000, Speed: 15, Accounts: 1},
		{N: 10000, Speed: 5, Accounts: 10},
		{N: 50, Speed: 60, Accounts: 3},
	}))
	for in, want := range map[string]string{
		"":          "the size must be a positive number",
		"0":         "the size must be a positive number",
		"ten":       "the size must be a positive number",
		"100@":      "the speed after @ must be a positive number",
		"100@-1":    "the speed after @ must be a positive number",
		"100@fast":  "the speed after @ must be a positive number",
		"100/0":     "the number of accounts after / must be a positive integer",
		"100@5/1.5": "the number of accounts after / must be a positive integer",
	} {
		_, err := ParseRuns(in, 60, 1)
		g.Expect(err).To(MatchError(ContainSubstring(want)), "input %q", in)
		g.Expect(err).To(MatchError(ContainSubstring(fmt.Sprintf("%q", strings.TrimSpace(in)))), "the error names the input %q", in)
	}
}

// TestCompareSmallFleet runs the whole comparison on a small fleet spread over two accounts,
// with both systems in their own processes and rollouts ended by ECS events, and checks what
// the benchmark exists to show: autodeploy deploys every build, reverts no rollback and makes
// no AWS call while idle or when it restarts; the cron reverts the pinned Environments and
// polls while idle.
func TestCompareSmallFleet(t *testing.T) {
	g := NewWithT(t)
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		t.Fatal("KUBEBUILDER_ASSETS is not set: run the tests with `make test`, which builds kube-apiserver and etcd into bin/")
	}
	api := &envtest.APIServer{}
	auditLog, err := WithAudit(api, t.TempDir())
	g.Expect(err).NotTo(HaveOccurred())
	// A rotated audit log would lose the counts of a large run: the benchmark reads one file.
	g.Expect(api.Configure().Get("audit-log-maxsize").Get(nil)).To(Equal([]string{"0"}), "the audit log is never rotated")
	cp := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		ControlPlane:          envtest.ControlPlane{APIServer: api},
	}
	restCfg, err := cp.Start()
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = cp.Stop() })
	k8s, err := client.New(restCfg, client.Options{Scheme: Scheme})
	g.Expect(err).NotTo(HaveOccurred())

	cfg := Config{
		Runs: []RunSpec{{N: 20, Speed: 60, Accounts: 2}}, Seed: 3, Tracking: TrackEvents,
		EnvsPerApp: 5, Clusters: 2, PinnedShare: 0.5,
		BuildInterval: 5 * time.Minute, Hour: 10 * time.Minute, Drain: 5 * time.Minute,
		Settle: time.Minute, Idle: 5 * time.Minute,
		PollInterval: time.Minute, PollWorkers: 4,
		AWSLatency: 40 * time.Millisecond, RolloutTime: time.Minute,
		Reconcilers: 4, RecvDuration: 500 * time.Millisecond, RecvWorkers: 2,
		KubeConfig: cp.KubeConfig,
		AuditLog:   auditLog,
		Log:        io.Discard,
	}
	if testing.Verbose() {
		cfg.Log = os.Stderr
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	results, err := Run(ctx, cfg, restCfg, k8s)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(results).To(HaveLen(1))
	r := results[0]
	a, p := r.Auto, r.Poll

	g.Expect(r.Builds).To(Equal(8), "4 applications, 2 builds each")
	g.Expect(r.Pinned).To(BeNumerically(">", 0))
	g.Expect(a.Outcome.Deployed).To(Equal(r.Builds), "autodeploy deploys every build")
	g.Expect(a.Outcome.Lost).To(BeZero())
	g.Expect(a.Outcome.Reverted).To(BeZero(), "autodeploy never reverts a pin")
	g.Expect(a.IdleCalls).To(BeZero(), "autodeploy makes no AWS call while idle")
	g.Expect(r.RestartCalls).To(BeZero(), "autodeploy makes no AWS call when it restarts over up-to-date Environments")
	g.Expect(a.Throttled).To(BeZero())
	g.Expect(a.ByOp).NotTo(HaveKey("DescribeImages"))
	g.Expect(a.ByOp["UpdateService"]).To(Equal(a.Outcome.Updates))
	g.Expect(a.EventsDelivered).To(BeNumerically(">=", a.Outcome.Updates), "each deploy's rollout ended by its ECS events")
	g.Expect(a.EventsDropped).To(BeZero())
	t.Logf("autodeploy's calls by operation: %v", a.ByOp)
	// With events, DescribeServices is only each deploy's own look at the service: no polling,
	// and no deploy looked at twice (a status conflict, or a cache behind the reconciler's
	// own write, costs no ECS call). A fresh deploy describes the service and the revision it
	// runs, and nothing else.
	g.Expect(a.ByOp["DescribeServices"]).To(Equal(a.ByOp["UpdateService"]), "calls by operation: %v", a.ByOp)
	g.Expect(a.ByOp["DescribeTaskDefinition"]).To(Equal(a.ByOp["UpdateService"]), "calls by operation: %v", a.ByOp)

	g.Expect(p.Outcome.Reverted).To(Equal(r.Pinned), "the cron reverts every pinned Environment")
	g.Expect(p.IdleCalls).To(BeNumerically(">=", 3*20), "the cron polls every Environment while idle")
	g.Expect(r.PollFirstTickCalls).To(BeNumerically(">=", 3*20))

	// Each system was measured in its own process.
	g.Expect(a.RSSKB).To(BeNumerically(">", 0))
	g.Expect(p.RSSKB).To(BeNumerically(">", 0))
	g.Expect(a.PeakHeap).To(BeNumerically(">", 0))
	g.Expect(a.CPU).To(BeNumerically(">", 0))
	g.Expect(r.RecvPerSec).To(BeNumerically(">", 0))
	g.Expect(r.PatchPerSec).To(BeNumerically(">", 0))
	g.Expect(a.BaseRSSKB).To(BeNumerically(">", 0), "the manager's fixed cost, over an empty namespace")
	g.Expect(a.BaseRSSKB).To(BeNumerically("<", a.RSSKB))
	// The API server: its processes' CPU and memory, apart.
	for _, name := range []string{"kube-apiserver", "etcd"} {
		g.Expect(a.ControlPlane.CPU).To(HaveKeyWithValue(name, BeNumerically(">", 0)), name)
		g.Expect(a.ControlPlane.PeakKB).To(HaveKeyWithValue(name, BeNumerically(">", 0)), name)
	}

	// The manager's writes, from the API server's audit log: the receiver recorded every build
	// once on each Environment of its application (pinned ones too); the reconciler recorded
	// each deploy's intent and outcome; every deploy has its Event.
	w := a.API
	t.Logf("status writes %v, conflicts %v, Events %v (+%d series updates), live reads %d", w.Status, w.Conflicts, w.Events, w.EventPatches, w.LiveReads)
	g.Expect(w.Audited).To(BeTrue())
	g.Expect(w.Status[writerReceiver]).To(Equal(r.Builds*cfg.EnvsPerApp), "one write per build and Environment")
	g.Expect(w.Status[writerReconciler]).To(BeNumerically(">=", 2*a.Outcome.Updates), "intent and outcome of each deploy")
	g.Expect(w.Status[writerRollouts]).To(BeNumerically(">", 0), "rollouts ended by ECS events")
	g.Expect(w.Status[writerRollouts]).To(BeNumerically("<=", a.Outcome.Updates))
	// BuildReceived only on the pinned Environments (a build they record and do not deploy);
	// a deploy has one Event when it updates the service (Deployed) and none when it starts.
	g.Expect(r.Pinned).To(BeNumerically(">", 0))
	// Every deploy is of a build recorded on an unpinned Environment, so at most the other
	// records have the Event.
	g.Expect(w.Events).To(HaveKeyWithValue("BuildReceived", And(BeNumerically(">", 0), BeNumerically("<=", r.Builds*cfg.EnvsPerApp-a.Outcome.Updates))))
	g.Expect(w.Events).To(HaveKeyWithValue("Deployed", a.Outcome.Updates))
	g.Expect(w.Events).NotTo(HaveKey("DeployStarted"))
	// What the deployed Environments weigh as stored.
	st := a.Stored
	g.Expect(st.Count).To(Equal(r.N - r.Pinned))
	g.Expect(st.History).To(BeNumerically(">=", 1))
	g.Expect(st.Object).To(BeNumerically(">", st.Status))
	g.Expect(st.Status).To(BeNumerically(">", 0))
}

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}
