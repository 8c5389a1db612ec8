package app_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/ecssim"
)

var (
	managerBinOnce sync.Once
	managerBin     string
	managerBinErr  error
)

// buildManager builds cmd/manager once per test run.
func buildManager(t testing.TB) string {
	t.Helper()
	managerBinOnce.Do(func() {
		dir, err := os.MkdirTemp("", "autodeploy-manager")
		if err != nil {
			managerBinErr = err
			return
		}
		managerBin = filepath.Join(dir, "manager")
		cmd := exec.Command("go", "build", "-o", managerBin, "./cmd/manager")
		cmd.Dir = filepath.Join("..", "..")
		out, err := cmd.CombinedOutput()
		if err != nil {
			managerBinErr = fmt.Errorf("go build ./cmd/manager: %v\n%s", err, out)
		}
	})
	if managerBinErr != nil {
		t.Fatal(managerBinErr)
	}
	return managerBin
}

// managerProcess is the manager binary running as its own process, as in a pod.
type managerProcess struct {
	cmd         *exec.Cmd
	receiverURL string
	log         *lockedBuffer
	// exited is closed once the process has ended (for whatever reason) and been waited for.
	exited chan struct{}
}

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// processFixture holds what every manager process of a test shares.
type processFixture struct {
	h          *harness
	bin        string
	kubeconfig string
	keyFile    string
}

// newProcessFixture runs managers against the shared envtest control plane.
func newProcessFixture(h *harness) *processFixture {
	h.t.Helper()
	return newProcessFixtureFor(h, restConfig)
}

// newProcessFixtureFor runs managers against the control plane cfg points at (a test's own
// envtest, for instance), through a kubeconfig file as in a pod.
func newProcessFixtureFor(h *harness, cfg *rest.Config) *processFixture {
	h.t.Helper()
	dir := h.t.TempDir()
	f := &processFixture{h: h, bin: buildManager(h.t), kubeconfig: filepath.Join(dir, "kubeconfig"), keyFile: filepath.Join(dir, "key")}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["envtest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	kc.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "admin"}
	kc.CurrentContext = "envtest"
	h.g.Expect(clientcmd.WriteToFile(*kc, f.kubeconfig)).To(Succeed())
	h.g.Expect(os.WriteFile(f.keyFile, append(testKey, '\n'), 0o600)).To(Succeed())
	return f
}

// launch runs a manager process watching the test's namespace, wired to the simulator
// through AWS_ENDPOINT_URL_ECS, as a deployment would be, without waiting for its receiver
// (a manager waiting for an unreachable API server does not listen yet).
func (f *processFixture) launch(extraArgs ...string) *managerProcess {
	h := f.h
	h.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	h.g.Expect(err).NotTo(HaveOccurred())
	addr := ln.Addr().String()
	h.g.Expect(ln.Close()).To(Succeed())
	args := append([]string{
		"--watch-namespaces=" + h.ns,
		"--manifest-secret-file=" + f.keyFile,
		"--receiver-bind-address=" + addr,
		"--metrics-bind-address=0",
		"--health-probe-bind-address=0",
		"--rollout-poll-interval=100ms",
		"--rollout-poll-max-interval=400ms",
		"--retry-base-delay=50ms",
		"--retry-max-delay=500ms",
		"--kube-api-qps=50",
		"--kube-api-burst=100",
	}, extraArgs...)
	cmd := exec.Command(f.bin, args...)
	cmd.Env = append(os.Environ(),
		"KUBECONFIG="+f.kubeconfig,
		"AWS_ENDPOINT_URL_ECS="+h.simURL,
		"AWS_ENDPOINT_URL_STS="+h.simURL,
		"AWS_REGION=us-east-1",
		"AWS_ACCESS_KEY_ID=AKIDAUTODEPLOYTEST",
		"AWS_SECRET_ACCESS_KEY=not-checked-by-the-simulator",
		"AWS_EC2_METADATA_DISABLED=true",
	)
	p := &managerProcess{cmd: cmd, receiverURL: "http://" + addr, log: &lockedBuffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	h.g.Expect(cmd.Start()).To(Succeed())
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	h.t.Cleanup(func() { p.kill() })
	return p
}

// start launches a manager process and waits until its receiver listens.
func (f *processFixture) start(extraArgs ...string) *managerProcess {
	h := f.h
	h.t.Helper()
	p := f.launch(extraArgs...)
	addr := strings.TrimPrefix(p.receiverURL, "http://")
	h.g.Eventually(func() error {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err
	}, timeout, poll).Should(Succeed(), "the manager's receiver did not come up")
	return p
}

// kill ends the process at once (SIGKILL): no clean shutdown, no lease release.
func (p *managerProcess) kill() {
	select {
	case <-p.exited:
	default:
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// running reports whether the process has not exited.
func (p *managerProcess) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// exitStatus describes how the process ended ("" while it runs).
func (p *managerProcess) exitStatus() string {
	if p.running() {
		return ""
	}
	return p.cmd.ProcessState.String() // written by Wait, before exited was closed
}

// post sends b to the process's receiver and returns the status, 0 when the request failed.
func (p *managerProcess) post(b build) int { return postManifestCode(p.receiverURL, b) }

// TestDrillKilledManagerLosesAndDoublesNothing kills the manager process (SIGKILL) at random
// points of a stream of builds and restarts it. At the end every unpinned Environment runs
// the latest build, no image was registered twice for a service, and the pinned
// Environment's service was never touched.
func TestDrillKilledManagerLosesAndDoublesNothing(t *testing.T) {
	seed := time.Now().UnixNano()
	if v := os.Getenv("AUTODEPLOY_DRILL_SEED"); v != "" {
		seed, _ = strconv.ParseInt(v, 10, 64)
	}
	t.Logf("seed %d (AUTODEPLOY_DRILL_SEED=%d replays the kill points)", seed, seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))

	h := newHarness(t, withSim(ecssim.WithRolloutDuration(200*time.Millisecond)))
	g := h.g
	// Latency widens the windows between the steps of a deploy, so kills land inside them.
	for _, op := range drillDeployOps {
		h.sim.SetLatency(op, 30*time.Millisecond)
	}
	svcs := h.fleet(3, func(i int, e *deployv1.Environment) {
		if i == 2 {
			e.Spec.PinnedImage = image("v1")
		}
	})
	f := newProcessFixture(h)

	const rounds = 6
	next := int64(1)
	for round := range rounds {
		p := f.start()
		// One to three builds, then a kill after a random number of ECS calls. The calls are
		// counted from before the builds: the round's last build alone makes at least 8 (a deploy
		// of a new image to each of the two unpinned services), however many ran before the
		// count is read, so the target is always reached.
		calls := h.sim.TotalCalls()
		for range 1 + rng.IntN(3) {
			g.Expect(p.post(newBuild(next))).To(Or(Equal(http.StatusAccepted), Equal(http.StatusOK)))
			next++
		}
		target := calls + 1 + rng.IntN(8)
		g.Eventually(h.sim.TotalCalls, timeout, time.Millisecond).Should(BeNumerically(">=", target), "round %d", round)
		p.kill()
	}

	// A last, undisturbed run finishes everything.
	p := f.start()
	latest := newBuild(next - 1).Image
	for _, svc := range svcs[:2] {
		g.Eventually(h.env(svc), timeout, poll).Should(And(
			WithTransform(deployedImage, Equal(latest)),
			WithTransform(rolloutResult, Equal(deployv1.ResultCompleted))), "%s\n%s", svc, p.log.String())
		g.Expect(h.webImage("prod", svc)).To(Equal(latest))
		images := h.revisionImages("prod-" + svc)
		seen := map[string]bool{}
		for _, img := range images {
			g.Expect(seen[img]).To(BeFalse(), "%s registered twice for %s: %v", img, svc, images)
			seen[img] = true
		}
	}
	pinned := svcs[2]
	g.Eventually(h.env(pinned), timeout, poll).Should(WithTransform(latestNumber, Equal(next-1)))
	g.Expect(h.revisionImages("prod-"+pinned)).To(Equal([]string{image("v1")}), "the pinned service never got another revision")
	g.Expect(h.webImage("prod", pinned)).To(Equal(image("v1")))
}

// TestDrillLeaderKilledMidDeployOtherFinishesOnce runs two managers with leader election and
// kills the leader (SIGKILL, so the lease is not released) while its UpdateService is in
// flight. The other takes the lease over and finishes the deploy with the revision already
// registered: one new revision, the service on the new image.
func TestDrillLeaderKilledMidDeployOtherFinishesOnce(t *testing.T) {
	h := newHarness(t)
	g := h.g
	family := h.seedService("prod", "shop-api", image("v1"))
	h.createEnv("prod", nil)
	f := newProcessFixture(h)
	election := []string{"--leader-elect", "--leader-election-namespace=" + h.ns,
		"--leader-elect-lease-duration=2s", "--leader-elect-renew-deadline=1500ms", "--leader-elect-retry-period=200ms"}
	acquired := func(p *managerProcess) func() string { return p.log.String }

	a := f.start(election...)
	g.Eventually(acquired(a), timeout, poll).Should(ContainSubstring("Successfully acquired lease"))
	b := f.start(election...)
	g.Consistently(acquired(b), "500ms", poll).ShouldNot(ContainSubstring("Successfully acquired lease"))

	h.sim.SetLatency("UpdateService", 3*time.Second)
	build := newBuild(21)
	// Either replica's receiver records the build; only the leader deploys.
	g.Expect(b.post(build)).To(Equal(http.StatusAccepted))
	g.Eventually(func() int { return h.sim.Calls("UpdateService") }, timeout, time.Millisecond).Should(Equal(1))
	a.kill()
	h.sim.SetLatency("UpdateService", 0)

	g.Eventually(acquired(b), timeout, poll).Should(ContainSubstring("Successfully acquired lease"))
	g.Eventually(h.env("prod"), timeout, poll).Should(And(
		WithTransform(deployedImage, Equal(build.Image)),
		WithTransform(rolloutResult, Equal(deployv1.ResultCompleted))), b.log.String())
	g.Expect(h.webImage("prod", "shop-api")).To(Equal(build.Image))
	g.Expect(h.sim.Calls("RegisterTaskDefinition")).To(Equal(1), "the revision the killed leader registered is reused")
	g.Expect(h.revisionImages(family)).To(Equal([]string{image("v1"), build.Image}))
}
