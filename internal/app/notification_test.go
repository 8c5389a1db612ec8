package app_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/ecssim"
)

const webhookKey = "notification-hmac-key-0123456789"

// circuitBreakerService creates prod/shop-api with the deployment circuit breaker and rollback
// on, so that a failed deployment is rolled back by ECS.
func (h *harness) circuitBreakerService() {
	h.createShopAPI(ecs.CreateServiceInput{DeploymentConfiguration: &types.DeploymentConfiguration{
		DeploymentCircuitBreaker: &types.DeploymentCircuitBreaker{Enable: true, Rollback: true},
	}})
}

func (h *harness) webhookNotification(ep *endpoint, outcomes ...string) {
	h.createSecret("hook", map[string]string{deployv1.SecretKeyHMAC: webhookKey})
	h.createNotification("hook", deployv1.NotificationProvider{
		Type: deployv1.ProviderWebhook, Address: ep.srv.URL + "/autodeploy", SecretRef: &deployv1.SecretReference{Name: "hook"},
	}, outcomes...)
}

// TestNotificationWebhookTellsEachDeployOutcomeOnce: a signed webhook (verified with the
// receiver's own verification) hears DeployStarted and RolloutCompleted of build 1, then
// DeployStarted, RolloutFailed and RolledBack of build 2, each once: status writes that repeat
// what was told deliver nothing again.
func TestNotificationWebhookTellsEachDeployOutcomeOnce(t *testing.T) {
	h := newHarness(t, withSim(ecssim.WithRolloutDuration(time.Hour)))
	g := h.g
	h.circuitBreakerService()
	h.createEnv("prod", nil)
	ep := newWebhook(t, []byte(webhookKey))
	h.webhookNotification(ep, allOutcomes...)
	h.quickNotifications(5 * time.Second)
	h.startManager()

	b1 := newBuild(1)
	g.Expect(h.post(b1).Code).To(Equal(http.StatusAccepted))
	g.Eventually(ep.outcomes, timeout, poll).Should(Equal([]string{deployv1.OutcomeDeployStarted}))
	g.Expect(h.sim.CompleteDeployment("prod", "shop-api")).To(Succeed())
	g.Eventually(ep.outcomes, timeout, poll).Should(Equal([]string{deployv1.OutcomeDeployStarted, deployv1.OutcomeRolloutCompleted}))

	first := ep.requests()[0]
	g.Expect(first).To(And(
		HaveKeyWithValue("namespace", h.ns), HaveKeyWithValue("environment", "prod"), HaveKeyWithValue("application", "shop-api"),
		HaveKeyWithValue("image", b1.Image), HaveKeyWithValue("trigger", deployv1.TriggerBuild),
		HaveKeyWithValue("notification", h.ns+"/hook")))
	g.Expect(first["build"]).To(And(HaveKeyWithValue("number", BeNumerically("==", 1)), HaveKeyWithValue("commit", "3f2c9e1"), HaveKeyWithValue("id", b1.ID)))
	g.Expect(ep.requests()[1]["deploy"]).To(Equal(first["deploy"]), "both outcomes are about one deploy")

	// Writes that show nothing new (the status, the metadata) tell nothing again.
	h.touchStatus("prod")
	h.updateEnv("prod", func(e *deployv1.Environment) { e.Annotations = map[string]string{"example.com/note": "x"} })

	b2 := newBuild(2)
	g.Expect(h.post(b2).Code).To(Equal(http.StatusAccepted))
	g.Eventually(h.env("prod"), timeout, poll).Should(And(WithTransform(deployedImage, Equal(b2.Image)), WithTransform(rolloutResult, Equal(deployv1.ResultInProgress))))
	g.Expect(h.sim.FailDeployment("prod", "shop-api", "ECS deployment circuit breaker: tasks failed to start.")).To(Succeed())
	want := []string{deployv1.OutcomeDeployStarted, deployv1.OutcomeRolloutCompleted, deployv1.OutcomeDeployStarted, deployv1.OutcomeRolloutFailed, deployv1.OutcomeRolledBack}
	g.Eventually(ep.outcomes, timeout, poll).Should(Equal(want))
	failed := ep.requests()[3]
	g.Expect(failed["reason"]).To(ContainSubstring("circuit breaker"))
	g.Expect(failed["build"]).To(HaveKeyWithValue("number", BeNumerically("==", 2)))
	g.Expect(ep.requests()[4]["message"]).To(ContainSubstring("rolled prod back to build 1"))

	// The status is written again; a later outcome still comes after exactly the five before.
	h.touchStatus("prod")
	ids := map[string]bool{}
	for _, r := range ep.requests() {
		g.Expect(ids).NotTo(HaveKey(r["id"]), "each outcome has its own id")
		ids[r["id"].(string)] = true
	}
	b3 := newBuild(3)
	g.Expect(h.post(b3).Code).To(Equal(http.StatusAccepted))
	g.Eventually(ep.outcomes, timeout, poll).Should(Equal(append(want, deployv1.OutcomeDeployStarted)))
	g.Expect(ep.malformed()).To(BeEmpty())
	g.Eventually(h.notification("hook"), timeout, poll).Should(WithTransform(notificationReady, Equal("True/"+deployv1.ReasonDelivered)))
	// The status records a delivery after it was made: wait for the sixth.
	g.Eventually(func() []int {
		var n []int
		for _, e := range h.notification("hook")().Status.Environments {
			n = append(n, len(e.Delivered))
		}
		return n
	}, timeout, poll).Should(Equal([]int{6}), "the keys of what was told and is still in the history")
}

// TestNotificationSlackRetriesAfter500And429: Slack answers 500, then 429 with Retry-After;
// the message is delivered after both, once, in Slack's incoming-webhook format.
func TestNotificationSlackRetriesAfter500And429(t *testing.T) {
	h := newHarness(t, withSim(ecssim.WithRolloutDuration(time.Hour)))
	g := h.g
	h.seedService("prod", "shop-api", image("v1"))
	h.createEnv("prod", nil)
	slack := newSlack(t)
	slack.fail(scripted{code: http.StatusInternalServerError, body: "rollup_error"}, scripted{code: http.StatusTooManyRequests, retryAfter: "1", body: "rate_limited"})
	h.createSecret("slack", map[string]string{deployv1.SecretKeyAddress: slack.slackURL()})
	h.createNotification("slack", deployv1.NotificationProvider{Type: deployv1.ProviderSlack, SecretRef: &deployv1.SecretReference{Name: "slack"}},
		deployv1.OutcomeDeployStarted)
	h.quickNotifications(5 * time.Second)
	failed, delivered := deliveries("slack", "failed"), deliveries("slack", "delivered")
	h.startManager()

	g.Expect(h.post(newBuild(5)).Code).To(Equal(http.StatusAccepted))
	g.Eventually(slack.requests, timeout, poll).Should(HaveLen(1))
	g.Expect(slack.attemptCount()).To(Equal(3), "500, 429, then ok")
	msg := slack.requests()[0]
	g.Expect(msg["text"]).To(And(ContainSubstring(h.ns+"/prod"), ContainSubstring("build 5")))
	g.Expect(msg["blocks"]).To(HaveLen(2))
	g.Expect(slack.malformed()).To(BeEmpty())
	// The sender counts a delivery once the endpoint's answer has reached it, after the
	// endpoint recorded the request.
	g.Eventually(func() float64 { return deliveries("slack", "failed") - failed }, timeout, poll).Should(BeNumerically("==", 2))
	g.Eventually(func() float64 { return deliveries("slack", "delivered") - delivered }, timeout, poll).Should(BeNumerically("==", 1))
	g.Eventually(h.notification("slack"), timeout, poll).Should(And(
		WithTransform(notificationReady, Equal("True/"+deployv1.ReasonDelivered)),
		WithTransform(func(n *deployv1.Notification) int32 { return n.Status.Failures }, BeZero())))
	g.Consistently(slack.attemptCount, "500ms", poll).Should(Equal(3), "nothing is sent again")
}

// TestNotificationFailingEndpointIsVisible: an endpoint that keeps answering 503 shows on the
// Notification (Ready=False, DeliveryFailed, the error) and in the metric, and is retried with
// backoff; a Notification whose Secret is missing says so. Both deliver once fixed.
func TestNotificationFailingEndpointIsVisible(t *testing.T) {
	h := newHarness(t, withSim(ecssim.WithRolloutDuration(time.Hour)))
	g := h.g
	h.seedService("prod", "shop-api", image("v1"))
	h.createEnv("prod", nil)
	ep := newWebhook(t, []byte(webhookKey))
	down := make([]scripted, 1000)
	for i := range down {
		down[i] = scripted{code: http.StatusServiceUnavailable, body: "down for maintenance"}
	}
	ep.fail(down...)
	h.webhookNotification(ep, deployv1.OutcomeDeployStarted)
	h.createNotification("nosecret", deployv1.NotificationProvider{
		Type: deployv1.ProviderWebhook, Address: ep.srv.URL, SecretRef: &deployv1.SecretReference{Name: "later"},
	}, deployv1.OutcomeDeployStarted)
	h.quickNotifications(5 * time.Second)
	failed := deliveries("webhook", "failed")
	h.startManager()

	g.Expect(h.post(newBuild(9)).Code).To(Equal(http.StatusAccepted))
	g.Eventually(h.notification("hook"), timeout, poll).Should(And(
		WithTransform(notificationReady, Equal("False/"+deployv1.ReasonDeliveryFailed)),
		WithTransform(notificationMessage, And(ContainSubstring("DeployStarted of Environment prod"), ContainSubstring("503"), ContainSubstring("down for maintenance"))),
		WithTransform(func(n *deployv1.Notification) int32 { return n.Status.Failures }, BeNumerically(">=", 3))))
	g.Eventually(func() float64 { return deliveries("webhook", "failed") - failed }, timeout, poll).Should(BeNumerically(">=", 3))
	g.Eventually(h.notification("nosecret"), timeout, poll).Should(And(
		WithTransform(notificationReady, Equal("False/"+deployv1.ReasonSecretNotReadable)),
		WithTransform(notificationMessage, ContainSubstring("the Secret later named by spec.provider.secretRef does not exist"))))
	g.Expect(ep.requests()).To(BeEmpty())

	// The endpoint recovers and the Secret appears: each Notification delivers once.
	ep.mu.Lock()
	ep.script = nil
	ep.mu.Unlock()
	h.createSecret("later", map[string]string{deployv1.SecretKeyHMAC: webhookKey})
	g.Eventually(ep.outcomes, timeout, poll).Should(Equal([]string{deployv1.OutcomeDeployStarted, deployv1.OutcomeDeployStarted}))
	g.Expect(ep.requests()[0]["notification"]).NotTo(Equal(ep.requests()[1]["notification"]))
	g.Eventually(h.notification("hook"), timeout, poll).Should(WithTransform(notificationReady, Equal("True/"+deployv1.ReasonDelivered)))
	g.Eventually(h.notification("nosecret"), timeout, poll).Should(WithTransform(notificationReady, Equal("True/"+deployv1.ReasonDelivered)))
}

// TestNotificationGitHubDeploymentsAndStatuses: the github provider creates one GitHub
// deployment per build (ref: the build's commit, environment: the Environment's name, in the
// repository the Environment's annotation names) and posts a status per outcome.
func TestNotificationGitHubDeploymentsAndStatuses(t *testing.T) {
	h := newHarness(t, withSim(ecssim.WithRolloutDuration(time.Hour)))
	g := h.g
	h.circuitBreakerService()
	h.createEnv("prod", func(e *deployv1.Environment) {
		e.Annotations = map[string]string{deployv1.GitHubRepositoryAnnotation: "shop/shop-api"}
	})
	gh := newGitHub(t, "ghp_test_token")
	h.createSecret("github", map[string]string{deployv1.SecretKeyToken: "ghp_test_token"})
	h.createNotification("github", deployv1.NotificationProvider{
		Type: deployv1.ProviderGitHub, Address: gh.srv.URL, SecretRef: &deployv1.SecretReference{Name: "github"},
	}, allOutcomes...)
	h.quickNotifications(5 * time.Second)
	h.startManager()

	g.Expect(h.post(newBuild(1)).Code).To(Equal(http.StatusAccepted))
	g.Eventually(gh.snapshot, timeout, poll).Should(ConsistOf(ghDeployment{ID: 1000, Repo: "shop/shop-api", Ref: "3f2c9e1", Environment: "prod", States: []string{"in_progress"}}))
	g.Expect(h.sim.CompleteDeployment("prod", "shop-api")).To(Succeed())
	g.Eventually(gh.snapshot, timeout, poll).Should(ConsistOf(ghDeployment{ID: 1000, Repo: "shop/shop-api", Ref: "3f2c9e1", Environment: "prod", States: []string{"in_progress", "success"}}))

	g.Expect(h.post(newBuild(2)).Code).To(Equal(http.StatusAccepted))
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(deployedImage, Equal(newBuild(2).Image)))
	g.Expect(h.sim.FailDeployment("prod", "shop-api", "tasks failed to start")).To(Succeed())
	g.Eventually(gh.snapshot, timeout, poll).Should(ConsistOf(
		ghDeployment{ID: 1000, Repo: "shop/shop-api", Ref: "3f2c9e1", Environment: "prod", States: []string{"in_progress", "success"}},
		ghDeployment{ID: 1001, Repo: "shop/shop-api", Ref: "3f2c9e1", Environment: "prod", States: []string{"in_progress", "failure", "inactive"}}))
	g.Expect(gh.malformed()).To(BeEmpty())
	// The status records a deployment after it was made.
	g.Eventually(func() []int {
		var n []int
		for _, e := range h.notification("github")().Status.Environments {
			n = append(n, len(e.GitHubDeployments))
		}
		return n
	}, timeout, poll).Should(Equal([]int{2}))
}

// TestNotificationHeldAndStalled: a build that names no image for a managed container is told
// as Held, and a deploy to a service that does not exist as Stalled, each once.
func TestNotificationHeldAndStalled(t *testing.T) {
	h := newHarness(t)
	g := h.g
	h.seedSetService("prod", "shop-api", image("v1"), workerImage("v1"))
	h.createEnv("set", withSet)
	h.createEnv("lost", func(e *deployv1.Environment) { e.Spec.Application, e.Spec.ECS.Service = "other", "no-such-service" })
	ep := newWebhook(t, []byte(webhookKey))
	h.webhookNotification(ep, allOutcomes...)
	h.quickNotifications(5 * time.Second)
	h.startManager()

	g.Expect(h.postSigned(setBody(142, ""), testKey, time.Now()).Code).To(Equal(http.StatusAccepted))
	other := build{App: "other", ID: "other:build-7", Branch: "main", Image: image("o7"), Number: 7}
	g.Expect(h.post(other).Code).To(Equal(http.StatusAccepted))
	g.Eventually(ep.outcomes, timeout, poll).Should(ConsistOf(deployv1.OutcomeHeld, deployv1.OutcomeStalled))
	for _, r := range ep.requests() {
		switch r["outcome"] {
		case deployv1.OutcomeHeld:
			g.Expect(r).To(And(HaveKeyWithValue("environment", "set"), HaveKeyWithValue("reason", deployv1.ReasonMissingContainerImage)))
			g.Expect(r["message"]).To(ContainSubstring(`container "worker"`))
			g.Expect(r["build"]).To(HaveKeyWithValue("number", BeNumerically("==", 142)))
		case deployv1.OutcomeStalled:
			g.Expect(r).To(And(HaveKeyWithValue("environment", "lost"), HaveKeyWithValue("reason", deployv1.ReasonServiceNotFound)))
			g.Expect(r["build"]).To(HaveKeyWithValue("number", BeNumerically("==", 7)))
		}
	}
	// A reconcile that writes the same state tells nothing again.
	h.touchStatus("lost")
	h.touchStatus("set")
	g.Consistently(ep.outcomes, "500ms", poll).Should(HaveLen(2))
	g.Expect(ep.malformed()).To(BeEmpty())
}

// TestNotificationAwaitingApprovalAtAPauseHook: a rollout waiting at an ECS pause hook is told
// to Slack as AwaitingApproval, once.
func TestNotificationAwaitingApprovalAtAPauseHook(t *testing.T) {
	h := newHarness(t, withSim(ecssim.WithStageDuration(50*time.Millisecond), ecssim.WithDeploymentMinute(time.Hour)))
	g := h.g
	h.createShopAPI(ecs.CreateServiceInput{DeploymentConfiguration: blueGreenWithPause(10, types.DeploymentLifecycleHookActionRollback)})
	h.createEnv("prod", nil)
	slack := newSlack(t)
	h.createSecret("slack", map[string]string{deployv1.SecretKeyAddress: slack.slackURL()})
	h.createNotification("slack", deployv1.NotificationProvider{Type: deployv1.ProviderSlack, SecretRef: &deployv1.SecretReference{Name: "slack"}},
		deployv1.OutcomeAwaitingApproval)
	h.quickNotifications(5 * time.Second)
	h.startManager()

	g.Expect(h.post(newBuild(21)).Code).To(Equal(http.StatusAccepted))
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(awaitedHookID, Not(BeEmpty())))
	hook := awaitedHookID(h.getEnv("prod"))
	g.Eventually(slack.requests, timeout, poll).Should(HaveLen(1))
	g.Expect(slack.requests()[0]["text"]).To(And(ContainSubstring("pause hook "+hook), ContainSubstring("autodeployctl continue prod -n "+h.ns)))
	g.Consistently(slack.requests, "500ms", poll).Should(HaveLen(1))
	g.Expect(slack.malformed()).To(BeEmpty())
}

// TestNotificationDeliveredAfterARestart: the manager stops after DeployStarted was told; the
// rollout completes while it is down; after the restart RolloutCompleted is told and
// DeployStarted is not told again.
func TestNotificationDeliveredAfterARestart(t *testing.T) {
	h := newHarness(t, withSim(ecssim.WithRolloutDuration(time.Hour)))
	g := h.g
	h.seedService("prod", "shop-api", image("v1"))
	h.createEnv("prod", nil)
	ep := newWebhook(t, []byte(webhookKey))
	h.webhookNotification(ep, allOutcomes...)
	h.quickNotifications(5 * time.Second)
	h.startManager()

	g.Expect(h.post(newBuild(4)).Code).To(Equal(http.StatusAccepted))
	g.Eventually(ep.outcomes, timeout, poll).Should(Equal([]string{deployv1.OutcomeDeployStarted}))
	g.Eventually(h.notification("hook"), timeout, poll).Should(WithTransform(func(n *deployv1.Notification) int {
		if len(n.Status.Environments) == 0 {
			return 0
		}
		return len(n.Status.Environments[0].Delivered)
	}, Equal(1)))
	h.stopManager()

	g.Expect(h.sim.CompleteDeployment("prod", "shop-api")).To(Succeed())
	h.startManager()
	g.Eventually(ep.outcomes, timeout, poll).Should(Equal([]string{deployv1.OutcomeDeployStarted, deployv1.OutcomeRolloutCompleted}))
	g.Expect(ep.malformed()).To(BeEmpty())
}

// TestNotificationHangingEndpointDoesNotSlowADeploy: while the endpoint holds the request of
// DeployStarted open, the deploy goes on and its rollout completes; once the endpoint answers,
// both outcomes are told.
func TestNotificationHangingEndpointDoesNotSlowADeploy(t *testing.T) {
	h := newHarness(t, withSim(ecssim.WithRolloutDuration(time.Hour)))
	g := h.g
	h.seedService("prod", "shop-api", image("v1"))
	h.createEnv("prod", nil)
	ep := newWebhook(t, []byte(webhookKey))
	ep.hangRequests()
	h.webhookNotification(ep, deployv1.OutcomeDeployStarted, deployv1.OutcomeRolloutCompleted)
	h.quickNotifications(time.Minute)
	h.startManager()

	g.Expect(h.post(newBuild(6)).Code).To(Equal(http.StatusAccepted))
	g.Eventually(ep.inFlightCount, timeout, poll).Should(Equal(1), "the endpoint holds the DeployStarted request")
	g.Expect(h.sim.CompleteDeployment("prod", "shop-api")).To(Succeed())
	g.Eventually(h.env("prod"), timeout, poll).Should(And(
		WithTransform(deployedImage, Equal(newBuild(6).Image)), WithTransform(rolloutResult, Equal(deployv1.ResultCompleted))))
	g.Expect(ep.inFlightCount()).To(Equal(1), "the deploy completed while the endpoint still held its request")
	g.Expect(ep.requests()).To(BeEmpty())

	ep.release()
	g.Eventually(ep.outcomes, timeout, poll).Should(Equal([]string{deployv1.OutcomeDeployStarted, deployv1.OutcomeRolloutCompleted}))
	g.Expect(ep.malformed()).To(BeEmpty())
}

// TestNotificationRejectsAnInvalidSpec: the API server refuses a Notification without outcomes,
// with an unknown outcome, or a Slack one without a Secret, with messages naming the field.
func TestNotificationRejectsAnInvalidSpec(t *testing.T) {
	h := newHarness(t)
	g := h.g
	mk := func(outcomes []string, p deployv1.NotificationProvider) error {
		return k8sClient.Create(context.Background(), &deployv1.Notification{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "bad-", Namespace: h.ns},
			Spec:       deployv1.NotificationSpec{Outcomes: outcomes, Provider: p},
		})
	}
	hook := deployv1.NotificationProvider{Type: deployv1.ProviderWebhook, Address: "https://example.com/hook"}
	g.Expect(mk(nil, hook)).To(MatchError(ContainSubstring("spec.outcomes")))
	g.Expect(mk([]string{"Deployed"}, hook)).To(MatchError(ContainSubstring("spec.outcomes[0]")))
	g.Expect(mk([]string{deployv1.OutcomeStalled}, deployv1.NotificationProvider{Type: deployv1.ProviderSlack})).
		To(MatchError(ContainSubstring("need spec.provider.secretRef")))
	g.Expect(mk([]string{deployv1.OutcomeStalled}, deployv1.NotificationProvider{Type: deployv1.ProviderWebhook})).
		To(MatchError(ContainSubstring("a webhook needs spec.provider.address")))
	list := &deployv1.NotificationList{}
	g.Expect(k8sClient.List(context.Background(), list, client.InNamespace(h.ns))).To(Succeed())
	g.Expect(list.Items).To(BeEmpty())
}
