package app_test

import (
	"encoding/json"
	"net/http"
	"testing"

	. "github.com/onsi/gomega"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/ecssim"
	"github.com/autodeploy-dev/autodeploy/internal/metrics"
)

// stalledMessage returns the Stalled condition's reason and message when it is True.
func stalledMessage(e *deployv1.Environment) string {
	if c := condition(e, deployv1.StalledCondition); c != nil && c.Status == "True" {
		return c.Reason + ": " + c.Message
	}
	return ""
}

// TestInvalidTaskDefinitionStallsWithoutFurtherCalls: ECS refuses to register the revision
// of a malformed pin, and of a Fargate family without task-level memory, with a
// ClientException. The Environment is Stalled (InvalidTaskDefinition) with ECS's message, and
// nothing retries it: neither a new build recorded meanwhile nor a manager restart costs an
// ECS call.
func TestInvalidTaskDefinitionStallsWithoutFurtherCalls(t *testing.T) {
	h := newHarness(t)
	g := h.g
	h.seedService("prod", "shop-api", image("v1"))
	badPin := image("v2") + "!"
	h.createEnv("pinned", func(e *deployv1.Environment) { e.Spec.PinnedImage = badPin })

	// A family registered before Fargate asked for task-level memory.
	raw, err := json.Marshal(map[string]any{
		"family": "nomem", "networkMode": "awsvpc", "requiresCompatibilities": []string{"FARGATE"}, "cpu": "256",
		"containerDefinitions": []any{map[string]any{"name": "web", "image": image("v1"), "memory": 512}},
	})
	g.Expect(err).NotTo(HaveOccurred())
	_, err = h.sim.SeedTaskDefinition(raw)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(h.sim.SeedService("prod", "nomem", "nomem", 1)).To(Succeed())
	h.createEnv("nomem", func(e *deployv1.Environment) { e.Spec.ECS.Service = "nomem" })
	h.startManager()

	g.Eventually(h.env("pinned"), timeout, poll).Should(WithTransform(stalledMessage, And(
		HavePrefix(deployv1.ReasonInvalidTaskDefinition+": "),
		ContainSubstring("Container.image contains invalid characters."),
		ContainSubstring(badPin))))
	g.Expect(readyReason(h.getEnv("pinned"))).To(Equal("False/" + deployv1.ReasonInvalidTaskDefinition))

	b := newBuild(4)
	g.Expect(h.post(b).Code).To(Equal(http.StatusAccepted))
	g.Eventually(h.env("nomem"), timeout, poll).Should(WithTransform(stalledMessage, And(
		HavePrefix(deployv1.ReasonInvalidTaskDefinition+": "),
		ContainSubstring("Fargate requires that 'memory' be defined at the task level."))))
	g.Eventually(h.env("pinned"), timeout, poll).Should(WithTransform(latestNumber, Equal(b.Number)))
	g.Expect(h.sim.Calls("RegisterTaskDefinition")).To(Equal(2), "one attempt each")
	g.Consistently(func() int { return h.sim.Calls("RegisterTaskDefinition") }, "500ms", poll).Should(Equal(2), "not retried")
	g.Expect(h.sim.Calls("UpdateService")).To(BeZero())

	// A restart costs no ECS call either.
	h.stopManager()
	h.sim.ResetCalls()
	before := metrics.EnvironmentReconciles()
	h.startManager()
	g.Eventually(metrics.EnvironmentReconciles, timeout, poll).Should(BeNumerically(">=", before+2))
	g.Consistently(h.sim.TotalCalls, "500ms", poll).Should(BeZero())
	g.Expect(stalledMessage(h.getEnv("pinned"))).To(HavePrefix(deployv1.ReasonInvalidTaskDefinition + ": "))
}

// TestConcurrentRegistrationClientExceptionIsRetried: ECS's ClientException "Too many
// concurrent attempts to create a new revision" clears by itself: the deploy is retried and
// succeeds, with one revision.
func TestConcurrentRegistrationClientExceptionIsRetried(t *testing.T) {
	h := newHarness(t)
	g := h.g
	family := h.seedService("prod", "shop-api", image("v1"))
	h.createEnv("prod", nil)
	h.sim.InjectFault("RegisterTaskDefinition", ecssim.Fault{Code: "ClientException", Message: ecssim.ConcurrentRevisionMessage, Times: 2})
	h.startManager()

	b := newBuild(6)
	g.Expect(h.post(b).Code).To(Equal(http.StatusAccepted))
	g.Eventually(h.env("prod"), timeout, poll).Should(And(
		WithTransform(deployedImage, Equal(b.Image)),
		WithTransform(readyReason, Equal("True/"+deployv1.ReasonDeployed))))
	g.Expect(h.webImage("prod", "shop-api")).To(Equal(b.Image))
	g.Expect(h.sim.Calls("RegisterTaskDefinition")).To(Equal(3))
	g.Expect(h.sim.Revisions(family)).To(Equal(2))
}

// TestLostRegisterAnswerRegistersOneRevision: ECS registers the revision but its answer is
// lost (a 5xx after the work). The SDK does not repeat the call; the reconciler's retry finds
// the revision registered and reuses it: exactly one revision for the deploy.
func TestLostRegisterAnswerRegistersOneRevision(t *testing.T) {
	h := newHarness(t)
	g := h.g
	family := h.seedService("prod", "shop-api", image("v1"))
	h.createEnv("prod", nil)
	h.sim.InjectFault("RegisterTaskDefinition", ecssim.Fault{Status: 500, Code: "ServerException", Times: 1, AfterWork: true})
	h.startManager()

	b := newBuild(8)
	g.Expect(h.post(b).Code).To(Equal(http.StatusAccepted))
	g.Eventually(h.env("prod"), timeout, poll).Should(And(
		WithTransform(deployedImage, Equal(b.Image)),
		WithTransform(readyReason, Equal("True/"+deployv1.ReasonDeployed))))
	g.Expect(h.sim.Revisions(family)).To(Equal(2), "one revision for one deploy")
	g.Expect(h.sim.Calls("RegisterTaskDefinition")).To(Equal(1))
	g.Expect(h.getEnv("prod").Status.LastDeploy().TaskDefinitionARN).To(HaveSuffix(family + ":2"))
	g.Expect(h.webImage("prod", "shop-api")).To(Equal(b.Image))
}
