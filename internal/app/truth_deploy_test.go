package app_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ktypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/ecssim"
	"github.com/autodeploy-dev/autodeploy/internal/metrics"
	"github.com/autodeploy-dev/autodeploy/internal/taskdef"
)

// These tests pin down what a deploy is and when one may happen, in the situations where the
// controller's status write and ECS disagree: a status write lost after UpdateService, a
// pending deploy that is withdrawn, a build that reuses an image reference, and a retry
// request. Each names its scenario in its doc comment.

// truthAWatch observes the simulator's wire calls (install observe with
// ecssim.WithCallObserver). It counts the calls of each operation that succeeded (the
// simulator's own counters also count faulted calls) and runs one-shot hooks right after a
// matching call was handled and before its caller gets the answer: the observer runs inside
// the simulator's handler, and its responses are small enough to stay in net/http's buffer
// until the handler returns.
type truthAWatch struct {
	mu    sync.Mutex
	ok    map[string]int
	hooks []*truthAHook
	errs  []error
}

type truthAHook struct {
	match func(ecssim.Call) bool
	do    func() error
	taken bool
	done  bool
}

func (w *truthAWatch) observe(c ecssim.Call) {
	w.mu.Lock()
	if c.ErrorCode == "" {
		if w.ok == nil {
			w.ok = map[string]int{}
		}
		w.ok[c.Operation]++
	}
	var run *truthAHook
	for _, hk := range w.hooks {
		if !hk.taken && hk.match(c) {
			hk.taken, run = true, hk
			break
		}
	}
	w.mu.Unlock()
	if run == nil {
		return
	}
	err := run.do()
	w.mu.Lock()
	defer w.mu.Unlock()
	run.done = true
	if err != nil {
		w.errs = append(w.errs, err)
	}
}

// after runs do once, right after the next call that match accepts, and returns a function
// for Eventually that reports whether do has run.
func (w *truthAWatch) after(match func(ecssim.Call) bool, do func() error) func() bool {
	hk := &truthAHook{match: match, do: do}
	w.mu.Lock()
	w.hooks = append(w.hooks, hk)
	w.mu.Unlock()
	return func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return hk.done
	}
}

// succeeded returns how many calls of op the simulator answered without an error.
func (w *truthAWatch) succeeded(op string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ok[op]
}

// err returns the errors the hooks returned.
func (w *truthAWatch) err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return errors.Join(w.errs...)
}

// truthAHarness is a harness whose simulator reports its calls to w and keeps a new
// deployment IN_PROGRESS until the test completes or fails it (unless quick).
func truthAHarness(t *testing.T, w *truthAWatch, quick bool) *harness {
	opts := []ecssim.Option{ecssim.WithCallObserver(w.observe)}
	if !quick {
		opts = append(opts, ecssim.WithRolloutDuration(time.Hour))
	}
	return newHarness(t, withSim(opts...))
}

// truthAOp matches calls of op answered with code ("" for success).
func truthAOp(op, code string) func(ecssim.Call) bool {
	return func(c ecssim.Call) bool { return c.Operation == op && c.ErrorCode == code }
}

func truthAKey(h *harness, name string) ktypes.NamespacedName {
	return ktypes.NamespacedName{Namespace: h.ns, Name: name}
}

// truthAEdit applies mutate to the live Environment key with an update (not through the
// harness's Gomega: hooks run on the simulator's goroutines).
func truthAEdit(key ktypes.NamespacedName, mutate func(*deployv1.Environment)) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		env := &deployv1.Environment{}
		if err := k8sClient.Get(context.Background(), key, env); err != nil {
			return err
		}
		mutate(env)
		return k8sClient.Update(context.Background(), env)
	})
}

// truthATouch edits a label of the Environment: its resourceVersion changes and nothing
// else, so that a status patch the controller prepared from the version before conflicts,
// which is what a lost status write looks like to the next pass.
func truthATouch(key ktypes.NamespacedName) func() error {
	return func() error {
		return truthAEdit(key, func(e *deployv1.Environment) {
			if e.Labels == nil {
				e.Labels = map[string]string{}
			}
			e.Labels["truth.autodeploy.dev/touched"] = fmt.Sprint(time.Now().UnixNano())
		})
	}
}

func truthASetRetry(e *deployv1.Environment, value string) {
	if e.Annotations == nil {
		e.Annotations = map[string]string{}
	}
	e.Annotations[deployv1.RetryAnnotation] = value
}

// truthARollbackOn turns the deployment circuit breaker with rollback on for a service.
func truthARollbackOn(h *harness, cluster, service string) {
	h.t.Helper()
	_, err := h.sdk().UpdateService(context.Background(), &ecs.UpdateServiceInput{
		Cluster: aws.String(cluster), Service: aws.String(service),
		DeploymentConfiguration: &types.DeploymentConfiguration{
			DeploymentCircuitBreaker: &types.DeploymentCircuitBreaker{Enable: true, Rollback: true},
		},
	})
	h.g.Expect(err).NotTo(HaveOccurred())
}

// truthABuild is build n with the given image reference (a mutable tag, say).
func truthABuild(n int64, img string) build {
	b := newBuild(n)
	b.Image = img
	return b
}

func truthALastImage(e *deployv1.Environment) string {
	if e == nil || e.Status.LastDeploy() == nil {
		return ""
	}
	return e.Status.LastDeploy().Image
}

func truthALastTrigger(e *deployv1.Environment) string {
	if e == nil || e.Status.LastDeploy() == nil {
		return ""
	}
	return e.Status.LastDeploy().Trigger
}

func truthALastBuildNumber(e *deployv1.Environment) int64 {
	if e == nil || e.Status.LastDeploy() == nil || e.Status.LastDeploy().Build == nil {
		return 0
	}
	return e.Status.LastDeploy().Build.Number
}

// truthAPending returns the image of the pending deploy, "" when there is none.
func truthAPending(e *deployv1.Environment) string {
	if e == nil || e.Status.PendingDeploy == nil {
		return ""
	}
	return e.Status.PendingDeploy.Image
}

func truthAObserved(e *deployv1.Environment) int64 {
	if e == nil {
		return -1
	}
	return e.Status.ObservedGeneration
}

func truthARetryHandled(e *deployv1.Environment) string {
	if e == nil {
		return ""
	}
	return e.Status.RetryHandled
}

// truthAReady renders the Ready condition as "Status/Reason: Message".
func truthAReady(e *deployv1.Environment) string {
	c := condition(e, deployv1.ReadyCondition)
	if c == nil {
		return ""
	}
	return fmt.Sprintf("%s/%s: %s", c.Status, c.Reason, c.Message)
}

// truthATriggers lists the triggers of the history, newest first.
func truthATriggers(e *deployv1.Environment) []string {
	var out []string
	for _, d := range e.Status.History {
		out = append(out, fmt.Sprintf("%q", d.Trigger))
	}
	return out
}

// truthAFailRollout posts b and fails its rollout; ECS rolls the service back, and the
// Environment holds b back.
func truthAFailRollout(h *harness, name string, b build) {
	h.t.Helper()
	g := h.g
	g.Expect(h.post(b).Code).To(Equal(http.StatusAccepted))
	g.Eventually(h.env(name), timeout, poll).Should(And(
		WithTransform(truthALastImage, Equal(b.Image)),
		WithTransform(truthALastBuildNumber, Equal(b.Number)),
		WithTransform(rolloutResult, Equal(deployv1.ResultInProgress)),
		WithTransform(truthAPending, BeEmpty())))
	g.Expect(h.sim.FailDeployment("prod", "shop-api", "tasks failed to start")).To(Succeed())
	g.Eventually(h.env(name), timeout, poll).Should(And(
		WithTransform(rolloutResult, Equal(deployv1.ResultFailed)),
		WithTransform(readyReason, Equal("False/"+deployv1.ReasonRolloutFailed))))
}

// truthADeployAndComplete posts b and completes its rollout.
func truthADeployAndComplete(h *harness, name string, b build) {
	h.t.Helper()
	g := h.g
	g.Expect(h.post(b).Code).To(Equal(http.StatusAccepted))
	g.Eventually(h.env(name), timeout, poll).Should(And(
		WithTransform(truthALastBuildNumber, Equal(b.Number)),
		WithTransform(rolloutResult, Equal(deployv1.ResultInProgress)),
		WithTransform(truthAPending, BeEmpty())))
	g.Expect(h.sim.CompleteDeployment("prod", "shop-api")).To(Succeed())
	g.Eventually(h.env(name), timeout, poll).Should(And(
		WithTransform(deployedImage, Equal(b.Image)),
		WithTransform(rolloutResult, Equal(deployv1.ResultCompleted))))
}

// truthARestart restarts the manager and waits until it finished reconciling the test's
// Environments once: the "later, unrelated reconcile" a deploy decision must survive (a
// label or annotation edit does not start one; the predicate filters it).
func truthARestart(h *harness, envs int) {
	h.t.Helper()
	h.stopManager()
	before := metrics.EnvironmentReconciles()
	h.startManager()
	h.g.Eventually(metrics.EnvironmentReconciles, timeout, poll).Should(BeNumerically(">=", before+float64(envs)))
}

// truthARequestRetry sets the retry annotation to value, then makes a spec change that
// decides nothing (spec.branch is only read by the receiver, and every build here is of
// main) and waits until the controller observed it: by then it has reconciled the
// Environment with the retry value, so the test knows when the request was seen.
func truthARequestRetry(h *harness, name, value string) {
	h.t.Helper()
	h.updateEnv(name, func(e *deployv1.Environment) { truthASetRetry(e, value) })
	h.updateEnv(name, func(e *deployv1.Environment) {
		if e.Spec.Branch == "" {
			e.Spec.Branch = "main"
		} else {
			e.Spec.Branch = ""
		}
	})
	gen := h.getEnv(name).Generation
	h.g.Eventually(h.env(name), timeout, poll).Should(WithTransform(truthAObserved, Equal(gen)))
}

// Scenario 1, the wrong previous image after a resumed deploy: UpdateService of build 2
// succeeds and the status write after it conflicts, so the next pass finds the service
// already on build 2. The deploy must still record the image it replaced (build 1, deployed
// through the controller) as previousImage, so that when ECS fails the rollout and its
// circuit breaker rolls back, deployedImage names build 1, which runs again.
func TestTruthResumedDeployRecordsTheImageItReplaced(t *testing.T) {
	w := &truthAWatch{}
	h := truthAHarness(t, w, false)
	g := h.g
	h.seedService("prod", "shop-api", image("v0"))
	truthARollbackOn(h, "prod", "shop-api")
	h.createEnv("prod", nil)
	h.startManager()

	v1 := newBuild(1)
	truthADeployAndComplete(h, "prod", v1)
	updates := w.succeeded("UpdateService")

	// The status write right after build 2's UpdateService conflicts.
	touched := w.after(truthAOp("UpdateService", ""), truthATouch(truthAKey(h, "prod")))
	b := newBuild(2)
	g.Expect(h.post(b).Code).To(Equal(http.StatusAccepted))
	g.Eventually(touched, timeout, poll).Should(BeTrue())
	g.Expect(w.err()).To(Succeed())
	g.Eventually(h.env("prod"), timeout, poll).Should(And(
		WithTransform(truthALastImage, Equal(b.Image)),
		WithTransform(rolloutResult, Equal(deployv1.ResultInProgress)),
		WithTransform(truthAPending, BeEmpty())))
	g.Expect(w.succeeded("UpdateService")).To(Equal(updates+1), "the resumed pass does not update the service again")

	g.Expect(h.sim.FailDeployment("prod", "shop-api", "tasks failed to start")).To(Succeed())
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(rolloutResult, Equal(deployv1.ResultFailed)))
	g.Expect(h.webImage("prod", "shop-api")).To(Equal(v1.Image), "ECS rolled back to build 1")
	last := h.getEnv("prod").Status.LastDeploy()
	g.Expect(last.RolledBack).To(BeTrue())
	g.Expect(last.PreviousImage).To(Equal(v1.Image), "history[0].previousImage is the image build 2 replaced")
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(deployedImage, Equal(v1.Image)),
		"status.deployedImage is what ECS rolled back to")
}

// Scenario 2, a held build released by a pending deploy: build X's rollout failed (held, not
// retried); a pin to Z is left pending by a transient ECS error; the pin is removed with
// auto-deploy on. Withdrawing the pin must not record a deploy nobody asked for (an entry
// with no trigger) that lifts the hold: X is never deployed again, not even by a later
// reconcile, and Ready does not claim X runs.
func TestTruthWithdrawnPinDoesNotReleaseAHeldBuild(t *testing.T) {
	w := &truthAWatch{}
	h := truthAHarness(t, w, false)
	g := h.g
	v1 := image("v1")
	h.seedService("prod", "shop-api", v1)
	truthARollbackOn(h, "prod", "shop-api")
	h.createEnv("prod", nil)
	h.startManager()

	x := newBuild(10)
	truthAFailRollout(h, "prod", x)
	g.Expect(deployedImage(h.getEnv("prod"))).To(Equal(v1))
	updates := w.succeeded("UpdateService")

	// A pin to z, left pending: registering its revision fails with a transient error.
	h.sim.InjectFault("RegisterTaskDefinition", ecssim.Fault{Code: "ServerException"})
	z := image("z")
	h.updateEnv("prod", func(e *deployv1.Environment) { e.Spec.PinnedImage = z })
	g.Eventually(h.env("prod"), timeout, poll).Should(And(
		WithTransform(truthAPending, Equal(z)),
		WithTransform(readyReason, Equal("False/"+deployv1.ReasonECSUnavailable))))

	// The pin is removed; then ECS recovers.
	h.updateEnv("prod", func(e *deployv1.Environment) { e.Spec.PinnedImage = "" })
	gen := h.getEnv("prod").Generation
	g.Eventually(h.env("prod"), timeout, poll).Should(And(
		WithTransform(truthAObserved, Equal(gen)),
		WithTransform(truthAPending, BeEmpty())))
	h.sim.ClearFaults()

	env := h.getEnv("prod")
	g.Expect(truthATriggers(env)).NotTo(ContainElement(`""`), "no deploy without a trigger is recorded")
	ready := truthAReady(env)
	g.Expect(strings.HasPrefix(ready, "True/") && strings.Contains(ready, x.Image)).To(BeFalse(),
		"Ready does not claim the held build runs: %s", ready)
	g.Consistently(func() int { return w.succeeded("UpdateService") }, "1s", poll).Should(Equal(updates), "X is not deployed")
	g.Expect(h.webImage("prod", "shop-api")).To(Equal(v1))

	// A later reconcile that has nothing to do with X does not deploy it either.
	truthARestart(h, 1)
	g.Consistently(func() int { return w.succeeded("UpdateService") }, "1s", poll).Should(Equal(updates), "X is not deployed after a restart")
	g.Expect(h.webImage("prod", "shop-api")).To(Equal(v1))
	g.Expect(deployedImage(h.getEnv("prod"))).To(Equal(v1))
}

// Scenario 5, mutable tags: CI pushes repo:main for every build, so build N+1 carries the
// same image reference as build N. The unit of a deploy is the build: build N+1 must start a
// new ECS deployment (one UpdateService, a new deployment id) and be recorded as deployed
// (history[0].build.number == N+1).
func TestTruthNewBuildOfAMutableTagIsDeployed(t *testing.T) {
	w := &truthAWatch{}
	h := truthAHarness(t, w, true)
	g := h.g
	h.seedService("prod", "shop-api", image("v1"))
	h.createEnv("prod", nil)
	h.startManager()

	tag := image("main")
	n := truthABuild(41, tag)
	g.Expect(h.post(n).Code).To(Equal(http.StatusAccepted))
	g.Eventually(h.env("prod"), timeout, poll).Should(And(
		WithTransform(truthALastBuildNumber, Equal(n.Number)),
		WithTransform(rolloutResult, Equal(deployv1.ResultCompleted))))
	first := h.getEnv("prod").Status.LastDeploy().DeploymentID
	updates := w.succeeded("UpdateService")

	n1 := truthABuild(42, tag)
	g.Expect(h.post(n1).Code).To(Equal(http.StatusAccepted))
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(latestNumber, Equal(n1.Number)))
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(truthALastBuildNumber, Equal(n1.Number)),
		"build 42 (same image reference as build 41) is deployed")
	last := h.getEnv("prod").Status.LastDeploy()
	g.Expect(last.DeploymentID).NotTo(Or(BeEmpty(), Equal(first)), "a new ECS deployment")
	g.Expect(w.succeeded("UpdateService")).To(Equal(updates + 1))
	svc, ok := h.sim.Service("prod", "shop-api")
	g.Expect(ok).To(BeTrue())
	primary, _ := svc.Primary()
	g.Expect(primary.ID).To(Equal(last.DeploymentID))
	g.Eventually(h.env("prod"), timeout, poll).Should(And(
		WithTransform(rolloutResult, Equal(deployv1.ResultCompleted)),
		WithTransform(truthAReady, And(HavePrefix("True/"), ContainSubstring("build 42")))))
	g.Consistently(func() int { return w.succeeded("UpdateService") }, "500ms", poll).Should(Equal(updates + 1))
}

// Scenario 5, a rebuild after a failed rollout of a mutable tag: build N's rollout of
// repo:main failed and ECS rolled back; build N+1 (new id and number, same tag) is a new
// build and must be deployed, not held back as the failed image.
func TestTruthRebuildOfAFailedTagIsDeployed(t *testing.T) {
	w := &truthAWatch{}
	h := truthAHarness(t, w, false)
	g := h.g
	h.seedService("prod", "shop-api", image("v1"))
	truthARollbackOn(h, "prod", "shop-api")
	h.createEnv("prod", nil)
	h.startManager()

	tag := image("main")
	truthAFailRollout(h, "prod", truthABuild(51, tag))
	updates := w.succeeded("UpdateService")

	n1 := truthABuild(52, tag)
	g.Expect(h.post(n1).Code).To(Equal(http.StatusAccepted))
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(latestNumber, Equal(n1.Number)))
	g.Eventually(h.env("prod"), timeout, poll).Should(And(
		WithTransform(truthALastBuildNumber, Equal(n1.Number)),
		WithTransform(rolloutResult, Equal(deployv1.ResultInProgress))),
		"the rebuild is deployed, not held")
	g.Expect(w.succeeded("UpdateService")).To(Equal(updates + 1))
	g.Expect(h.webImage("prod", "shop-api")).To(Equal(tag))
	g.Expect(deployedImage(h.getEnv("prod"))).To(Equal(tag))
}

// Scenario 6, a retry is not idempotent: a retry request on a failed rollout forces an
// UpdateService, and the status write after it conflicts. The next pass must record that
// deployment, not force a second one: exactly one new ECS deployment per retry request.
func TestTruthRetryIsDeployedOnceWhenItsStatusWriteConflicts(t *testing.T) {
	w := &truthAWatch{}
	h := truthAHarness(t, w, false)
	g := h.g
	h.seedService("prod", "shop-api", image("v1"))
	truthARollbackOn(h, "prod", "shop-api")
	h.createEnv("prod", nil)
	h.startManager()

	x := newBuild(60)
	truthAFailRollout(h, "prod", x)
	updates := w.succeeded("UpdateService")

	touched := w.after(truthAOp("UpdateService", ""), truthATouch(truthAKey(h, "prod")))
	h.updateEnv("prod", func(e *deployv1.Environment) { truthASetRetry(e, "1") })
	g.Eventually(touched, timeout, poll).Should(BeTrue())
	g.Expect(w.err()).To(Succeed())
	g.Eventually(h.env("prod"), timeout, poll).Should(And(
		WithTransform(truthALastTrigger, Equal(deployv1.TriggerRetry)),
		WithTransform(rolloutResult, Equal(deployv1.ResultInProgress)),
		WithTransform(truthAPending, BeEmpty())))
	g.Expect(w.succeeded("UpdateService")).To(Equal(updates+1), "one ECS deployment for one retry request")
	g.Consistently(func() int { return w.succeeded("UpdateService") }, "500ms", poll).Should(Equal(updates + 1))
	env := h.getEnv("prod")
	g.Expect(env.Status.RetryHandled).To(Equal("1"))
	g.Expect(env.Status.LastDeploy().Image).To(Equal(x.Image))
	svc, _ := h.sim.Service("prod", "shop-api")
	primary, _ := svc.Primary()
	g.Expect(primary.ID).To(Equal(env.Status.LastDeploy().DeploymentID))
}

// Scenario 6, a second retry request while one is pending: the first retry's UpdateService
// fails with a transient error, and meanwhile the retry annotation gets a second new value.
// The pending retry answers both: once ECS recovers there is one new ECS deployment,
// status.retryHandled is the second value, and when that retry fails too it stays held (the
// second value is not left to retry it by itself later).
func TestTruthRetryRequestedDuringAPendingRetryIsAnswered(t *testing.T) {
	w := &truthAWatch{}
	h := truthAHarness(t, w, false)
	g := h.g
	v1 := image("v1")
	h.seedService("prod", "shop-api", v1)
	truthARollbackOn(h, "prod", "shop-api")
	h.createEnv("prod", nil)
	h.startManager()

	x := newBuild(65)
	truthAFailRollout(h, "prod", x)
	updates := w.succeeded("UpdateService")

	// The retry's UpdateService fails (ClientException: not retried by the SDK, retried by the
	// controller with backoff); the second value arrives during the first failed call.
	h.sim.InjectFault("UpdateService", ecssim.Fault{Code: "ClientException", Message: "Too many concurrent attempts"})
	second := w.after(truthAOp("UpdateService", "ClientException"), func() error {
		return truthAEdit(truthAKey(h, "prod"), func(e *deployv1.Environment) { truthASetRetry(e, "2") })
	})
	h.updateEnv("prod", func(e *deployv1.Environment) { truthASetRetry(e, "1") })
	g.Eventually(second, timeout, poll).Should(BeTrue())
	g.Expect(w.err()).To(Succeed())
	// Several more failed attempts: the controller has seen the second value while the retry
	// is pending.
	calls := h.sim.Calls("UpdateService")
	g.Eventually(func() int { return h.sim.Calls("UpdateService") }, timeout, poll).Should(BeNumerically(">=", calls+3))
	g.Expect(h.env("prod")()).To(WithTransform(truthAPending, Equal(x.Image)))
	h.sim.ClearFaults()

	g.Eventually(h.env("prod"), timeout, poll).Should(And(
		WithTransform(truthALastTrigger, Equal(deployv1.TriggerRetry)),
		WithTransform(rolloutResult, Equal(deployv1.ResultInProgress)),
		WithTransform(truthAPending, BeEmpty())))
	g.Expect(w.succeeded("UpdateService")).To(Equal(updates+1), "one ECS deployment answers both requests")
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(truthARetryHandled, Equal("2")),
		"status.retryHandled is the newest retry request")

	// The retry fails as well: it is held, and no reconcile retries it unasked.
	g.Expect(h.sim.FailDeployment("prod", "shop-api", "tasks failed to start")).To(Succeed())
	g.Eventually(h.env("prod"), timeout, poll).Should(And(
		WithTransform(rolloutResult, Equal(deployv1.ResultFailed)),
		WithTransform(readyReason, Equal("False/"+deployv1.ReasonRolloutFailed))))
	truthARestart(h, 1)
	g.Consistently(func() int { return w.succeeded("UpdateService") }, "1s", poll).Should(Equal(updates + 1))
	g.Expect(h.webImage("prod", "shop-api")).To(Equal(v1))
}

// Scenario 6, a retry value set while nothing has failed: it asks for nothing, so it must not
// make a later failure retry by itself. First while the service is healthy (the last rollout
// completed), then while a rollout is under way; each time the next rollout fails and must
// stay held, also across a later reconcile (a manager restart): no automatic UpdateService.
func TestTruthRetryRequestedWhileHealthyDoesNotRetryALaterFailure(t *testing.T) {
	w := &truthAWatch{}
	h := truthAHarness(t, w, false)
	g := h.g
	v1 := image("v1")
	h.seedService("prod", "shop-api", v1)
	truthARollbackOn(h, "prod", "shop-api")
	h.createEnv("prod", nil)
	h.startManager()

	// Healthy: build 70's rollout completed.
	truthADeployAndComplete(h, "prod", newBuild(70))
	truthARequestRetry(h, "prod", "1")
	truthAFailRollout(h, "prod", newBuild(71))
	updates := w.succeeded("UpdateService")
	truthARestart(h, 1)
	g.Consistently(func() int { return w.succeeded("UpdateService") }, "1s", poll).Should(Equal(updates),
		"a retry value set while the last rollout had completed does not retry build 71")

	// Under way: build 72 is rolling out, nothing has failed.
	b := newBuild(72)
	g.Expect(h.post(b).Code).To(Equal(http.StatusAccepted))
	g.Eventually(h.env("prod"), timeout, poll).Should(And(
		WithTransform(truthALastBuildNumber, Equal(b.Number)),
		WithTransform(rolloutResult, Equal(deployv1.ResultInProgress)),
		WithTransform(truthAPending, BeEmpty())))
	truthARequestRetry(h, "prod", "2")
	g.Expect(h.sim.FailDeployment("prod", "shop-api", "tasks failed to start")).To(Succeed())
	g.Eventually(h.env("prod"), timeout, poll).Should(And(
		WithTransform(rolloutResult, Equal(deployv1.ResultFailed)),
		WithTransform(readyReason, Equal("False/"+deployv1.ReasonRolloutFailed))))
	updates = w.succeeded("UpdateService")
	truthARestart(h, 1)
	g.Consistently(func() int { return w.succeeded("UpdateService") }, "1s", poll).Should(Equal(updates),
		"a retry value set while build 72 was rolling out does not retry it once it failed")
	g.Expect(h.webImage("prod", "shop-api")).To(Equal(newBuild(70).Image), "ECS rolled 72 back to 70")
	g.Expect(h.env("prod")()).To(WithTransform(readyReason, Equal("False/"+deployv1.ReasonRolloutFailed)))
}

// Scenario 7, resuming a deploy that ECS already failed: an earlier pass recorded the intent
// to deploy X, updated the service to X's revision, and lost its status write; meanwhile the
// circuit breaker failed X's deployment and rolled the service back. On resume the
// controller must not update the service to X again: it records X's deployment as Failed
// (rolled back), and deployedImage is the image ECS rolled back to.
func TestTruthResumingADeployECSAlreadyFailedDoesNotRedeploy(t *testing.T) {
	w := &truthAWatch{}
	h := truthAHarness(t, w, false)
	g := h.g
	ctx := context.Background()
	running, x := newBuild(3), newBuild(4)
	family := h.seedService("prod", "shop-api", running.Image)
	truthARollbackOn(h, "prod", "shop-api")

	// The earlier pass recorded the intent before calling ECS ...
	h.createEnv("prod", nil)
	env := h.getEnv("prod")
	earlier := metav1.NewTime(time.Now().Add(-time.Minute))
	started := metav1.Now()
	env.Status.LatestBuild = &deployv1.Build{ID: x.ID, Number: x.Number, Image: x.Image, Branch: x.Branch, ReceivedAt: started}
	env.Status.DeployedImage = running.Image
	env.Status.History = []deployv1.Deploy{{Image: running.Image, Build: &deployv1.BuildRef{ID: running.ID, Number: running.Number},
		Trigger: deployv1.TriggerBuild, Result: deployv1.ResultCompleted, StartedAt: earlier, ServiceUpdatedAt: &earlier, FinishedAt: &earlier}}
	env.Status.PendingDeploy = &deployv1.Deploy{Image: x.Image, Trigger: deployv1.TriggerBuild, StartedAt: started,
		Build: &deployv1.BuildRef{ID: x.ID, Number: x.Number}}
	g.Expect(k8sClient.Status().Update(ctx, env)).To(Succeed())

	// ... registered X's revision and updated the service to it (its status write was lost) ...
	api := h.sdk()
	cur, err := api.DescribeTaskDefinition(ctx, &ecs.DescribeTaskDefinitionInput{TaskDefinition: aws.String(family),
		Include: []types.TaskDefinitionField{types.TaskDefinitionFieldTags}})
	g.Expect(err).NotTo(HaveOccurred())
	in, err := taskdef.RegisterInput(cur.TaskDefinition, cur.Tags, "web", x.Image)
	g.Expect(err).NotTo(HaveOccurred())
	reg, err := api.RegisterTaskDefinition(ctx, in)
	g.Expect(err).NotTo(HaveOccurred())
	_, err = api.UpdateService(ctx, &ecs.UpdateServiceInput{Cluster: aws.String("prod"), Service: aws.String("shop-api"),
		TaskDefinition: reg.TaskDefinition.TaskDefinitionArn})
	g.Expect(err).NotTo(HaveOccurred())
	svc, _ := h.sim.Service("prod", "shop-api")
	failed, _ := svc.Primary()
	// ... and the circuit breaker failed X and rolled the service back.
	g.Expect(h.sim.FailDeployment("prod", "shop-api", "tasks failed to start")).To(Succeed())
	g.Expect(h.webImage("prod", "shop-api")).To(Equal(running.Image))
	updates, registers := w.succeeded("UpdateService"), w.succeeded("RegisterTaskDefinition")
	failures, rollbacks := testutil.ToFloat64(metrics.Deploys.WithLabelValues("failed")), testutil.ToFloat64(metrics.Rollbacks)

	h.startManager()
	gen := h.getEnv("prod").Generation
	g.Eventually(h.env("prod"), timeout, poll).Should(And(
		WithTransform(truthAObserved, Equal(gen)),
		WithTransform(truthAPending, BeEmpty())))
	g.Expect(w.succeeded("UpdateService")).To(Equal(updates), "the service is not updated to X again")
	g.Expect(w.succeeded("RegisterTaskDefinition")).To(Equal(registers))
	g.Expect(h.webImage("prod", "shop-api")).To(Equal(running.Image))
	env = h.getEnv("prod")
	last := env.Status.LastDeploy()
	g.Expect(last.Image).To(Equal(x.Image))
	g.Expect(last.DeploymentID).To(Equal(failed.ID), "history[0] is X's ECS deployment")
	g.Expect(last.Result).To(Equal(deployv1.ResultFailed))
	g.Expect(last.RolledBack).To(BeTrue())
	g.Expect(env.Status.DeployedImage).To(Equal(running.Image), "deployedImage is the image ECS rolled back to")
	g.Expect(readyReason(env)).To(Equal("False/" + deployv1.ReasonRolloutFailed))
	// The failure found on resume is counted like one seen as it happens.
	// (It is counted after the status write the test waited for.)
	g.Eventually(func() float64 { return testutil.ToFloat64(metrics.Deploys.WithLabelValues("failed")) }, timeout, poll).Should(Equal(failures + 1))
	g.Eventually(func() float64 { return testutil.ToFloat64(metrics.Rollbacks) }, timeout, poll).Should(Equal(rollbacks + 1))
	g.Consistently(func() int { return w.succeeded("UpdateService") }, "1s", poll).Should(Equal(updates))
}

// Scenario 9, a pending pin that can never succeed cannot be withdrawn: with auto-deploy off,
// a pin's deploy stalls before UpdateService (ECS rejects its revision with a permanent
// error), then the pin is removed. The controller must drop the pin's deploy: no further
// RegisterTaskDefinition or UpdateService calls, no pending deploy, deployedImage is what
// runs, and Ready is no longer stuck on the pin's failure.
func TestTruthWithdrawnPinThatCannotSucceedIsDropped(t *testing.T) {
	w := &truthAWatch{}
	h := truthAHarness(t, w, true)
	g := h.g
	h.seedService("prod", "shop-api", image("v1"))
	h.createEnv("prod", nil)
	h.startManager()

	b := newBuild(90)
	g.Expect(h.post(b).Code).To(Equal(http.StatusAccepted))
	g.Eventually(h.env("prod"), timeout, poll).Should(And(
		WithTransform(deployedImage, Equal(b.Image)),
		WithTransform(rolloutResult, Equal(deployv1.ResultCompleted))))
	h.updateEnv("prod", func(e *deployv1.Environment) { e.Spec.AutoDeploy = false })
	gen := h.getEnv("prod").Generation
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(truthAObserved, Equal(gen)))

	h.sim.InjectFault("RegisterTaskDefinition", ecssim.Fault{Code: "InvalidParameterException",
		Message: "Invalid 'containerDefinitions[0].image' value."})
	z := image("z")
	h.updateEnv("prod", func(e *deployv1.Environment) { e.Spec.PinnedImage = z })
	g.Eventually(h.env("prod"), timeout, poll).Should(And(
		WithTransform(truthAPending, Equal(z)),
		WithTransform(readyReason, Equal("False/"+deployv1.ReasonInvalidRequest))))
	registers, updates := h.sim.Calls("RegisterTaskDefinition"), h.sim.Calls("UpdateService")

	h.updateEnv("prod", func(e *deployv1.Environment) { e.Spec.PinnedImage = "" })
	gen = h.getEnv("prod").Generation
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(truthAObserved, Equal(gen)))
	g.Expect(h.sim.Calls("RegisterTaskDefinition")).To(Equal(registers), "the withdrawn pin is not attempted again")
	g.Expect(h.sim.Calls("UpdateService")).To(Equal(updates))
	env := h.getEnv("prod")
	g.Expect(env.Status.PendingDeploy).To(BeNil())
	g.Expect(env.Status.DeployedImage).To(Equal(b.Image))
	g.Expect(h.webImage("prod", "shop-api")).To(Equal(b.Image))
	g.Expect(readyReason(env)).NotTo(Equal("False/"+deployv1.ReasonInvalidRequest), "Ready is not stuck on the withdrawn pin")
	g.Expect(condition(env, deployv1.StalledCondition).Status).NotTo(Equal(metav1.ConditionTrue))
	g.Consistently(func() int { return h.sim.Calls("RegisterTaskDefinition") + h.sim.Calls("UpdateService") }, "1s", poll).
		Should(Equal(registers + updates))
	g.Expect(strings.Contains(truthAReady(env), z)).To(BeFalse(), "Ready does not mention the withdrawn pin")
}

// The randomized drill's find (seed 1796172336817926218): an Environment moves back to a
// service whose rollout of the image it wants is still in progress. The deploy finds the
// image running and changes nothing, but must record what that rollout replaced: when ECS
// then fails it and rolls back, status.deployedImage is the image ECS put back, not the
// failed one.
func TestTruthRetargetBackToARolloutInProgressRecordsWhatItReplaced(t *testing.T) {
	w := &truthAWatch{}
	h := truthAHarness(t, w, false)
	g := h.g
	h.seedService("prod", "shop-api", image("v0"))
	h.seedService("prod", "shop-api-b", image("v0"))
	truthARollbackOn(h, "prod", "shop-api")
	h.createEnv("prod", nil)
	h.startManager()

	b1, b2 := newBuild(1), newBuild(2)
	truthADeployAndComplete(h, "prod", b1)
	// Build 2 rolls out on shop-api (in progress), then the Environment moves to shop-api-b
	// and back.
	g.Expect(h.post(b2).Code).To(Equal(http.StatusAccepted))
	g.Eventually(h.env("prod"), timeout, poll).Should(And(
		WithTransform(truthALastBuildNumber, Equal(b2.Number)), WithTransform(rolloutResult, Equal(deployv1.ResultInProgress))))
	for _, svc := range []string{"shop-api-b", "shop-api"} {
		h.updateEnv("prod", func(e *deployv1.Environment) { e.Spec.ECS.Service = svc })
		g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(func(e *deployv1.Environment) string {
			if e.Status.Target == nil || e.Status.PendingDeploy != nil {
				return ""
			}
			return e.Status.Target.Service
		}, Equal(svc)))
	}
	g.Expect(h.webImage("prod", "shop-api")).To(Equal(b2.Image))
	env := h.getEnv("prod")
	g.Expect(env.Status.LastDeploy().Trigger).To(Equal(deployv1.TriggerTarget))
	g.Expect(env.Status.LastDeploy().PreviousImage).To(Equal(b1.Image), "what the rollout of build 2 replaced")

	g.Expect(h.sim.FailDeployment("prod", "shop-api", "tasks failed to start")).To(Succeed())
	g.Eventually(h.env("prod"), timeout, poll).Should(And(
		WithTransform(rolloutResult, Equal(deployv1.ResultFailed)),
		WithTransform(deployedImage, Equal(b1.Image))))
	g.Expect(h.webImage("prod", "shop-api")).To(Equal(b1.Image))
	g.Expect(readyReason(h.getEnv("prod"))).NotTo(HavePrefix("True/"))
}
