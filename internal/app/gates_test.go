package app_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/ecssim"
)

func gateOf(e *deployv1.Environment) string {
	if e == nil || e.Status.Gate == nil {
		return ""
	}
	g := e.Status.Gate
	if g.Build == nil {
		return g.Reason
	}
	return fmt.Sprintf("%s/%d", g.Reason, g.Build.Number)
}

func deployedNumber(e *deployv1.Environment) int64 {
	if e == nil || e.Status.DeployedBuild == nil {
		return 0
	}
	return e.Status.DeployedBuild.Number
}

// eventNotes returns the notes of the Events of this namespace with reason.
func (h *harness) eventNotes(reason string) []string {
	list := &eventsv1.EventList{}
	_ = k8sClient.List(context.Background(), list, client.InNamespace(h.ns))
	var notes []string
	for _, e := range list.Items {
		if e.Reason == reason {
			notes = append(notes, e.Note)
		}
	}
	return notes
}

func (h *harness) annotate(name string, kv map[string]string, opts ...client.PatchOption) {
	h.t.Helper()
	env := h.getEnv(name)
	base := env.DeepCopy()
	if env.Annotations == nil {
		env.Annotations = map[string]string{}
	}
	for k, v := range kv {
		if v == "" {
			delete(env.Annotations, k)
		} else {
			env.Annotations[k] = v
		}
	}
	h.g.Expect(k8sClient.Patch(context.Background(), env, client.MergeFrom(base), opts...)).To(Succeed())
}

// Staging deploys every build; prod, promoted from staging with a soak time, deploys a build
// only after it completed on staging and ran there for the soak; a build that failed on staging
// never reaches prod. Staging's rollouts reach prod through the watch, with no polling.
func TestPromotionChainWithSoakAndFailedUpstream(t *testing.T) {
	const soak = 4 * time.Second
	h := newHarness(t, withSim(ecssim.WithRolloutDuration(time.Hour)))
	g := h.g
	h.seedService("staging", "shop-api", image("v1"))
	h.seedService("prod", "shop-api", image("v1"))
	h.createEnv("shop-api-staging", func(e *deployv1.Environment) { e.Spec.ECS.Cluster = "staging" })
	h.createEnv("shop-api-prod", func(e *deployv1.Environment) {
		e.Spec.Promotion = &deployv1.Promotion{Upstream: "shop-api-staging", SoakTime: &metav1.Duration{Duration: soak}}
	})
	h.startManager()

	b143 := newBuild(143)
	g.Expect(h.post(b143).Code).To(Equal(http.StatusAccepted))
	g.Eventually(h.env("shop-api-staging"), timeout, poll).Should(WithTransform(rolloutResult, Equal(deployv1.ResultInProgress)))
	g.Eventually(h.env("shop-api-prod"), timeout, poll).Should(And(
		WithTransform(gateOf, Equal("WaitingForUpstream/143")),
		WithTransform(readyReason, Equal("False/WaitingForUpstream"))))
	prod := h.getEnv("shop-api-prod")
	g.Expect(prod.Status.Gate.Message).To(Equal("Waiting for shop-api-staging to complete build 143"))
	g.Expect(prod.Status.PendingDeploy).To(BeNil())
	g.Expect(h.webImage("prod", "shop-api")).To(Equal(image("v1")), "nothing reaches prod before staging completes")

	// Staging completes 143: prod soaks it, then deploys it.
	g.Expect(h.sim.CompleteDeployment("staging", "shop-api")).To(Succeed())
	g.Eventually(h.env("shop-api-prod"), timeout, poll).Should(Or(
		WithTransform(gateOf, Equal("Soaking/143")), WithTransform(deployedNumber, Equal(int64(143)))))
	g.Eventually(h.env("shop-api-prod"), timeout, poll).Should(WithTransform(deployedNumber, Equal(int64(143))))
	staging := h.getEnv("shop-api-staging")
	prod = h.getEnv("shop-api-prod")
	g.Expect(prod.Status.LastDeploy().StartedAt.Time).To(BeTemporally(">=", staging.Status.LastDeploy().FinishedAt.Add(soak)),
		"prod deploys 143 only after it soaked on staging")
	g.Expect(prod.Status.PromotedBuild.ID).To(Equal(b143.ID))
	g.Expect(h.webImage("prod", "shop-api")).To(Equal(b143.Image))
	g.Expect(h.sim.CompleteDeployment("prod", "shop-api")).To(Succeed())
	g.Eventually(h.env("shop-api-prod"), timeout, poll).Should(And(
		WithTransform(rolloutResult, Equal(deployv1.ResultCompleted)), WithTransform(gateOf, BeEmpty())))

	// 144 fails on staging: prod keeps 143 and says why.
	g.Expect(h.post(newBuild(144)).Code).To(Equal(http.StatusAccepted))
	g.Eventually(h.env("shop-api-staging"), timeout, poll).Should(And(
		WithTransform(latestNumber, Equal(int64(144))), WithTransform(rolloutResult, Equal(deployv1.ResultInProgress))))
	g.Expect(h.sim.FailDeployment("staging", "shop-api", "tasks failed to start")).To(Succeed())
	g.Eventually(h.env("shop-api-prod"), timeout, poll).Should(WithTransform(func(e *deployv1.Environment) string {
		if e.Status.Gate == nil {
			return ""
		}
		return e.Status.Gate.Reason + ": " + e.Status.Gate.Message
	}, HavePrefix(deployv1.ReasonNotPromoted+": Build 144 failed on shop-api-staging")))
	prod = h.getEnv("shop-api-prod")
	g.Expect(deployedNumber(prod)).To(Equal(int64(143)))
	g.Expect(prod.Status.History).To(HaveLen(1), "the failed build is never deployed to prod")

	// 145 completes on staging: prod deploys it after its soak.
	g.Expect(h.post(newBuild(145)).Code).To(Equal(http.StatusAccepted))
	g.Eventually(h.env("shop-api-staging"), timeout, poll).Should(And(
		WithTransform(latestNumber, Equal(int64(145))), WithTransform(rolloutResult, Equal(deployv1.ResultInProgress))))
	g.Expect(h.sim.CompleteDeployment("staging", "shop-api")).To(Succeed())
	g.Eventually(h.env("shop-api-prod"), timeout, poll).Should(WithTransform(deployedNumber, Equal(int64(145))))
	prod = h.getEnv("shop-api-prod")
	g.Expect(prod.Status.History).To(HaveLen(2))
	g.Expect(prod.Status.History[0].Build.Number).To(Equal(int64(145)))
	g.Expect(prod.Status.History[1].Build.Number).To(Equal(int64(143)))
}

// A promotion from a missing Environment stalls with no ECS call; creating the upstream
// reconciles the downstream through the watch. A self-reference is refused by the API server.
func TestPromotionFromMissingUpstream(t *testing.T) {
	h := newHarness(t)
	g := h.g
	h.seedService("prod", "shop-api", image("v1"))
	h.createEnv("prod", func(e *deployv1.Environment) { e.Spec.Promotion = &deployv1.Promotion{Upstream: "staging"} })
	h.startManager()
	g.Expect(h.post(newBuild(143)).Code).To(Equal(http.StatusAccepted))
	g.Eventually(h.env("prod"), timeout, poll).Should(And(
		WithTransform(latestNumber, Equal(int64(143))),
		WithTransform(readyReason, Equal("False/"+deployv1.ReasonInvalidPromotion))))
	g.Expect(condition(h.getEnv("prod"), deployv1.StalledCondition).Message).To(ContainSubstring("Environment staging, which does not exist"))
	g.Expect(h.sim.TotalCalls()).To(BeZero())

	h.seedService("staging", "shop-api", image("v1"))
	h.createEnv("staging", func(e *deployv1.Environment) { e.Spec.ECS.Cluster = "staging"; e.Spec.AutoDeploy = false })
	g.Eventually(h.env("prod"), timeout, poll).Should(And(
		WithTransform(gateOf, Equal("WaitingForUpstream/143")),
		WithTransform(readyReason, Equal("False/WaitingForUpstream"))))
	g.Expect(h.webImage("prod", "shop-api")).To(Equal(image("v1")))

	self := &deployv1.Environment{ObjectMeta: metav1.ObjectMeta{Name: "loop", Namespace: h.ns}, Spec: h.getEnv("prod").Spec}
	self.Spec.Promotion = &deployv1.Promotion{Upstream: "loop"}
	self.Spec.ECS.Service = "loop"
	err := k8sClient.Create(context.Background(), self)
	g.Expect(err).To(HaveOccurred())
	g.Expect(err.Error()).To(ContainSubstring("spec.promotion.upstream names this Environment itself"))
}

// With approval required, a build waits until the approve annotation names it; a newer build
// replaces a waiting one and needs its own approval; an approval of another build is ignored
// with a Warning Event; the approval goes into the history, with who approved.
func TestApprovalRequired(t *testing.T) {
	h := newHarness(t)
	g := h.g
	h.seedService("prod", "shop-api", image("v1"))
	h.createEnv("prod", func(e *deployv1.Environment) { e.Spec.Approval = deployv1.ApprovalRequired })
	h.startManager()

	g.Expect(h.post(newBuild(143)).Code).To(Equal(http.StatusAccepted))
	g.Eventually(h.env("prod"), timeout, poll).Should(And(
		WithTransform(gateOf, Equal("AwaitingApproval/143")),
		WithTransform(readyReason, Equal("False/"+deployv1.ReasonAwaitingApproval))))
	g.Expect(h.getEnv("prod").Status.Gate.Message).To(ContainSubstring("autodeployctl approve prod -n " + h.ns))

	// 144 replaces the waiting 143.
	b144 := newBuild(144)
	g.Expect(h.post(b144).Code).To(Equal(http.StatusAccepted))
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(gateOf, Equal("AwaitingApproval/144")))

	// Approving 143, which no longer waits, deploys nothing.
	h.annotate("prod", map[string]string{deployv1.ApproveAnnotation: "143"})
	g.Eventually(func() []string { return h.eventNotes("ApprovalIgnored") }, timeout, poll).Should(ContainElement(
		ContainSubstring("approve=143 approves no waiting build: build 144 awaits approval")))
	g.Expect(h.getEnv("prod").Status.PendingDeploy).To(BeNil())
	g.Expect(h.sim.Calls("UpdateService")).To(BeZero(), "no ECS call while a build waits")

	// Approving 144 deploys it, and the history says who approved.
	h.annotate("prod", map[string]string{deployv1.ApproveAnnotation: "144", deployv1.ApprovedByAnnotation: "alice@example.com"})
	g.Eventually(h.env("prod"), timeout, poll).Should(And(
		WithTransform(deployedNumber, Equal(int64(144))), WithTransform(rolloutResult, Equal(deployv1.ResultCompleted)),
		WithTransform(gateOf, BeEmpty())))
	last := h.getEnv("prod").Status.LastDeploy()
	g.Expect(last.Approval).NotTo(BeNil())
	g.Expect(last.Approval.Build).To(Equal(int64(144)))
	g.Expect(last.Approval.By).To(Equal("alice@example.com"))
	g.Expect(last.Approval.At).NotTo(BeNil())
	g.Expect(h.webImage("prod", "shop-api")).To(Equal(b144.Image))

	// 145 needs its own approval; without approved-by, the field manager that set the
	// annotation is who approved.
	g.Expect(h.post(newBuild(145)).Code).To(Equal(http.StatusAccepted))
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(gateOf, Equal("AwaitingApproval/145")))
	g.Expect(h.eventNotes("ApprovalIgnored")).To(HaveLen(1), "the approval of 144, deployed, is no approval of another build")
	h.annotate("prod", map[string]string{deployv1.ApproveAnnotation: "145", deployv1.ApprovedByAnnotation: ""}, client.FieldOwner("release-bot"))
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(deployedNumber, Equal(int64(145))))
	last = h.getEnv("prod").Status.LastDeploy()
	g.Expect(last.Approval.Build).To(Equal(int64(145)))
	g.Expect(last.Approval.By).To(Equal("release-bot"))
}

// A build that arrives outside every deploy window waits for the next opening and deploys
// then: the reconcile is requeued at the opening. The reconciler's clock is set a few seconds
// before a window opens.
func TestDeployWindowOpens(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	wall := time.Now()
	y, m, d := wall.In(berlin).Date()
	opening := time.Date(y, m, d+1, 9, 0, 0, 0, berlin)
	offset := opening.Add(-3 * time.Second).Sub(wall)
	clock := func() time.Time { return time.Now().Add(offset) }
	h := newHarness(t, withClock(clock))
	g := h.g
	h.seedService("prod", "shop-api", image("v1"))
	h.createEnv("prod", func(e *deployv1.Environment) {
		e.Spec.DeployWindows = []deployv1.DeployWindow{{Schedule: "0 9 * * *", Duration: metav1.Duration{Duration: time.Hour}, TimeZone: "Europe/Berlin"}}
	})
	h.startManager()

	b := newBuild(143)
	// The receiver checks the signature's time on the same clock.
	g.Expect(h.postSigned(b.body(), testKey, clock()).Code).To(Equal(http.StatusAccepted))
	g.Eventually(h.env("prod"), timeout, poll).Should(Or(
		WithTransform(gateOf, Equal("OutsideDeployWindow/143")), WithTransform(deployedNumber, Equal(int64(143)))))
	g.Eventually(h.env("prod"), timeout, poll).Should(And(
		WithTransform(deployedNumber, Equal(int64(143))), WithTransform(gateOf, BeEmpty())))
	env := h.getEnv("prod")
	g.Expect(env.Status.LastDeploy().StartedAt.Time).To(BeTemporally(">=", opening), "the build deploys when the window opens, not before")
	g.Expect(h.webImage("prod", "shop-api")).To(Equal(b.Image))
	g.Expect(h.sim.Calls("UpdateService")).To(Equal(1))
}

// An invalid deploy window stalls the Environment with no ECS call.
func TestDeployWindowInvalid(t *testing.T) {
	h := newHarness(t)
	g := h.g
	h.seedService("prod", "shop-api", image("v1"))
	h.createEnv("prod", func(e *deployv1.Environment) {
		e.Spec.DeployWindows = []deployv1.DeployWindow{{Schedule: "0 9 * * *", Duration: metav1.Duration{Duration: time.Hour}, TimeZone: "Europe/Atlantis"}}
	})
	h.startManager()
	g.Expect(h.post(newBuild(143)).Code).To(Equal(http.StatusAccepted))
	g.Eventually(h.env("prod"), timeout, poll).Should(And(
		WithTransform(latestNumber, Equal(int64(143))),
		WithTransform(readyReason, Equal("False/"+deployv1.ReasonInvalidDeployWindow))))
	g.Expect(condition(h.getEnv("prod"), deployv1.StalledCondition).Message).To(ContainSubstring(`timeZone "Europe/Atlantis" is not an IANA time zone`))
	g.Expect(h.sim.TotalCalls()).To(BeZero())
}

// A freeze holds builds back; a pin (a rollback) goes through it; when the freeze ends the
// waiting build deploys, requeued at its end.
func TestFreezeAndPinThroughIt(t *testing.T) {
	h := newHarness(t)
	g := h.g
	h.seedService("prod", "shop-api", image("v1"))
	h.createEnv("prod", func(e *deployv1.Environment) {
		e.Annotations = map[string]string{deployv1.FreezeAnnotation: "reason=incident 42"}
	})
	h.startManager()

	b := newBuild(143)
	g.Expect(h.post(b).Code).To(Equal(http.StatusAccepted))
	g.Eventually(h.env("prod"), timeout, poll).Should(And(
		WithTransform(gateOf, Equal("Frozen/143")), WithTransform(readyReason, Equal("False/Frozen"))))
	g.Expect(h.getEnv("prod").Status.Gate.Message).To(ContainSubstring("Frozen (incident 42): build 143 waits until the deploy.autodeploy.dev/freeze annotation is removed"))
	g.Expect(h.sim.TotalCalls()).To(BeZero(), "no ECS call while a build waits")

	// An emergency rollback goes through the freeze.
	h.updateEnv("prod", func(e *deployv1.Environment) { e.Spec.PinnedImage = image("v0") })
	g.Eventually(h.env("prod"), timeout, poll).Should(And(
		WithTransform(deployedImage, Equal(image("v0"))), WithTransform(gateOf, BeEmpty())))
	g.Expect(h.getEnv("prod").Status.LastDeploy().Trigger).To(Equal(deployv1.TriggerPin))
	g.Expect(h.webImage("prod", "shop-api")).To(Equal(image("v0")))

	// Unpinned during the freeze, the build waits again; the freeze gets an end, and the build
	// deploys when it ends.
	h.updateEnv("prod", func(e *deployv1.Environment) { e.Spec.PinnedImage = "" })
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(gateOf, Equal("Frozen/143")))
	g.Expect(deployedImage(h.getEnv("prod"))).To(Equal(image("v0")))
	end := time.Now().Add(3 * time.Second).Truncate(time.Second).Add(time.Second)
	h.annotate("prod", map[string]string{deployv1.FreezeAnnotation: "until=" + end.UTC().Format(time.RFC3339) + "; reason=incident 42"})
	g.Eventually(h.env("prod"), timeout, poll).Should(And(
		WithTransform(deployedNumber, Equal(int64(143))), WithTransform(gateOf, BeEmpty())))
	last := h.getEnv("prod").Status.LastDeploy()
	g.Expect(last.StartedAt.Time).To(BeTemporally(">=", end), "the build deploys when the freeze ends, not before")
	g.Expect(last.Trigger).To(Equal(deployv1.TriggerUnpin))
}
