package app_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"

	. "github.com/onsi/gomega"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/controllers"
	"github.com/autodeploy-dev/autodeploy/internal/ecssim"
	"github.com/autodeploy-dev/autodeploy/internal/receiver"
)

// readOnly are the fields ECS adds to a task definition; everything else must be carried over.
var readOnly = []string{"taskDefinitionArn", "revision", "status", "registeredAt", "registeredBy",
	"requiresAttributes", "compatibilities", "deregisteredAt"}

func writable(td map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range td {
		out[k] = v
	}
	for _, k := range readOnly {
		delete(out, k)
	}
	return out
}

func TestSignedManifestDeploysNewImage(t *testing.T) {
	h := newHarness(t)
	g := h.g
	family := h.seedService("prod", "shop-api", image("v1"))
	h.createEnv("prod", nil)
	h.startManager()

	// Nothing to deploy yet: no ECS call, Ready waiting for a build.
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(func(e *deployv1.Environment) string {
		if c := condition(e, deployv1.ReadyCondition); c != nil {
			return c.Reason
		}
		return ""
	}, Equal(deployv1.ReasonWaitingForBuild)))
	g.Expect(h.sim.TotalCalls()).To(BeZero())
	before, _ := h.sim.TaskDefinition(family + ":1")

	b := newBuild(142)
	r := h.post(b)
	g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
	g.Expect(r.Body["updated"]).To(ConsistOf(h.ns + "/prod"))

	g.Eventually(h.env("prod"), timeout, poll).Should(And(
		WithTransform(deployedImage, Equal(b.Image)),
		WithTransform(rolloutResult, Equal(deployv1.ResultCompleted))))
	env := h.getEnv("prod")
	g.Expect(env.Status.LatestBuild.ID).To(Equal(b.ID))
	g.Expect(env.Status.LatestBuild.Commit).To(Equal("3f2c9e1"))
	g.Expect(env.Status.DesiredImage).To(Equal(b.Image))
	g.Expect(env.Status.PendingDeploy).To(BeNil())
	g.Expect(env.Status.LastDeploy().Build).To(Equal(&deployv1.BuildRef{Application: "shop-api", Source: "Manifest", ID: b.ID, Number: 142}))
	g.Expect(env.Status.DeployedBuild).To(Equal(env.Status.LastDeploy().Build))
	g.Expect(env.Status.Target).To(HaveValue(Equal(env.Spec.ECS)), "what is deployed is bound to the target it runs on")
	g.Expect(env.Status.LastDeploy().Trigger).To(Equal(deployv1.TriggerBuild))
	g.Expect(env.Status.LastDeploy().TaskDefinitionARN).To(HaveSuffix("task-definition/" + family + ":2"))
	g.Expect(env.Status.ObservedGeneration).To(Equal(env.Generation))
	ready := condition(env, deployv1.ReadyCondition)
	g.Expect(ready.Status).To(Equal(metav1.ConditionTrue))
	g.Expect(ready.Reason).To(Equal(deployv1.ReasonDeployed))

	// ECS: exactly one new revision, the service updated to it, with the deployment id recorded.
	g.Expect(h.sim.Revisions(family)).To(Equal(2))
	g.Expect(h.sim.Calls("RegisterTaskDefinition")).To(Equal(1))
	g.Expect(h.sim.Calls("UpdateService")).To(Equal(1))
	svc, _ := h.sim.Service("prod", "shop-api")
	g.Expect(svc.TaskDefinitionARN).To(Equal(env.Status.LastDeploy().TaskDefinitionARN))
	primary, _ := svc.Primary()
	g.Expect(env.Status.LastDeploy().DeploymentID).To(Equal(primary.ID))

	// The new revision differs from the old only in the web container's image.
	after, _ := h.sim.TaskDefinition(family + ":2")
	want := writable(before)
	want["containerDefinitions"].([]any)[0].(map[string]any)["image"] = b.Image
	g.Expect(writable(after)).To(Equal(want))
	// The tags are copied, and the revision names the build it carries.
	tags, _ := h.sim.TaskDefinitionTags(family + ":2")
	g.Expect(tags).To(Equal(map[string]string{"team": "shop",
		"autodeploy.dev/application": "shop-api", "autodeploy.dev/build-id": b.ID, "autodeploy.dev/build-number": "142",
		"autodeploy.dev/build-source": "Manifest"}))

	// kubectl describe tells the story in one Event per step that changed what runs: the
	// deploy names the build and its trigger.
	g.Eventually(func() map[string]string { return h.eventsAbout("prod") }, timeout, poll).Should(
		HaveKeyWithValue(controllers.EventDeployed, And(ContainSubstring("build 142"), ContainSubstring("trigger Build"), ContainSubstring(primary.ID))))
}

// eventsAbout maps the reason of every Event about Environment name to its note.
func (h *harness) eventsAbout(name string) map[string]string {
	list := &eventsv1.EventList{}
	_ = k8sClient.List(context.Background(), list, client.InNamespace(h.ns))
	notes := map[string]string{}
	for _, e := range list.Items {
		if e.Regarding.Name == name {
			notes[e.Reason] = e.Note
		}
	}
	return notes
}

// TestBuildEventsOnlyWhereNotDeployed: a build deployed has no Event of its own, nor has the
// deploy's start: the Deployed and RolloutCompleted Events tell it. A build recorded on a
// pinned Environment has a BuildReceived Event saying why it was not deployed.
func TestBuildEventsOnlyWhereNotDeployed(t *testing.T) {
	h := newHarness(t)
	g := h.g
	h.seedService("prod", "shop-api", image("v1"))
	h.seedService("prod", "shop-api-canary", image("v1"))
	h.createEnv("prod", nil)
	h.createEnv("canary", func(e *deployv1.Environment) {
		e.Spec.ECS.Service = "shop-api-canary"
		e.Spec.PinnedImage = image("v1")
	})
	h.startManager()
	b := newBuild(7)
	g.Expect(h.post(b).Code).To(Equal(http.StatusAccepted))

	g.Eventually(func() map[string]string { return h.eventsAbout("canary") }, timeout, poll).Should(
		HaveKeyWithValue(receiver.EventBuildReceived, And(ContainSubstring("Build 7"), ContainSubstring("not deployed: pinned to "+image("v1")))))
	g.Eventually(func() map[string]string { return h.eventsAbout("prod") }, timeout, poll).Should(And(
		HaveKeyWithValue(controllers.EventDeployed, ContainSubstring("build 7")),
		HaveKey(controllers.EventRolloutCompleted)))
	// Each Event is written in a goroutine of its own: one the receiver made for prod would
	// have gone out when the build was recorded, before the deploy's ECS calls and long
	// before its rollout's end, which is listed now.
	g.Expect(h.eventsAbout("prod")).NotTo(HaveKey(receiver.EventBuildReceived))
	g.Expect(h.eventsAbout("prod")).NotTo(HaveKey("DeployStarted"))
}

func TestManifestForOtherApplicationOrBranchChangesNothing(t *testing.T) {
	h := newHarness(t)
	g := h.g
	h.seedService("prod", "shop-api", image("v1"))
	h.createEnv("prod", nil)
	h.createEnv("any-branch", func(e *deployv1.Environment) { e.Spec.Branch = ""; e.Spec.ECS.Service = "other" })
	h.startManager()

	other := newBuild(7)
	other.App = "billing"
	r := h.post(other)
	g.Expect(r.Code).To(Equal(http.StatusOK), r.Raw)
	g.Expect(r.Body["updated"]).To(BeEmpty())

	feature := newBuild(8)
	feature.Branch = "feature-x"
	r = h.post(feature)
	g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
	// Only the Environment without a branch filter records it.
	g.Expect(r.Body["updated"]).To(ConsistOf(h.ns + "/any-branch"))

	g.Expect(h.getEnv("prod").Status.LatestBuild).To(BeNil())
	g.Expect(h.getEnv("any-branch").Status.LatestBuild.Number).To(Equal(int64(8)))
	g.Expect(h.sim.Calls("RegisterTaskDefinition")).To(BeZero())
	g.Expect(h.sim.Calls("UpdateService")).To(BeZero())
	g.Expect(h.webImage("prod", "shop-api")).To(Equal(image("v1")))
}

func TestPinnedEnvironmentRecordsBuildsAndNeverDeploysThem(t *testing.T) {
	h := newHarness(t)
	g := h.g
	family := h.seedService("prod", "shop-api", image("v1"))
	h.createEnv("prod", nil)
	h.startManager()

	// Build 10 deploys.
	b10 := newBuild(10)
	g.Expect(h.post(b10).Code).To(Equal(http.StatusAccepted))
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(deployedImage, Equal(b10.Image)))

	// The operator pins the previous image: a rollback, deployed once.
	h.updateEnv("prod", func(e *deployv1.Environment) { e.Spec.PinnedImage = image("v1") })
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(deployedImage, Equal(image("v1"))))
	g.Expect(h.webImage("prod", "shop-api")).To(Equal(image("v1")))
	env := h.getEnv("prod")
	g.Expect(env.Status.LastDeploy().Trigger).To(Equal(deployv1.TriggerPin))
	g.Expect(condition(env, deployv1.PinnedCondition).Status).To(Equal(metav1.ConditionTrue))
	revisions := h.sim.Revisions(family)
	updates := h.sim.Calls("UpdateService")

	// New builds are recorded but never deployed.
	for n := int64(11); n <= 13; n++ {
		r := h.post(newBuild(n))
		g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
	}
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(latestNumber, Equal(int64(13))))
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(func(e *deployv1.Environment) int64 {
		return e.Status.ObservedGeneration
	}, Equal(h.getEnv("prod").Generation)))
	g.Consistently(h.env("prod"), "300ms", poll).Should(WithTransform(deployedImage, Equal(image("v1"))))
	g.Expect(h.sim.Revisions(family)).To(Equal(revisions))
	g.Expect(h.sim.Calls("UpdateService")).To(Equal(updates))
	g.Expect(h.webImage("prod", "shop-api")).To(Equal(image("v1")))
	g.Expect(h.getEnv("prod").Status.DesiredImage).To(Equal(image("v1")))

	// Unpinning deploys the latest build.
	h.updateEnv("prod", func(e *deployv1.Environment) { e.Spec.PinnedImage = "" })
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(deployedImage, Equal(newBuild(13).Image)))
	env = h.getEnv("prod")
	g.Expect(env.Status.LastDeploy().Trigger).To(Equal(deployv1.TriggerUnpin))
	g.Expect(env.Status.LastDeploy().Build.Number).To(Equal(int64(13)))
	g.Expect(h.webImage("prod", "shop-api")).To(Equal(newBuild(13).Image))

	// Pinning an older build's image rolls back to it, and it stays through later builds.
	h.updateEnv("prod", func(e *deployv1.Environment) { e.Spec.PinnedImage = b10.Image })
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(deployedImage, Equal(b10.Image)))
	g.Expect(h.post(newBuild(14)).Code).To(Equal(http.StatusAccepted))
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(latestNumber, Equal(int64(14))))
	g.Consistently(func() string { return h.webImage("prod", "shop-api") }, "300ms", poll).Should(Equal(b10.Image))
	g.Expect(h.getEnv("prod").Spec.PinnedImage).To(Equal(b10.Image), "the controller never writes spec")
}

func TestAutoDeployOffRecordsWithoutDeploying(t *testing.T) {
	h := newHarness(t)
	g := h.g
	h.seedService("prod", "shop-api", image("v1"))
	h.createEnv("prod", func(e *deployv1.Environment) { e.Spec.AutoDeploy = false })
	h.startManager()

	g.Expect(h.post(newBuild(1)).Code).To(Equal(http.StatusAccepted))
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(func(e *deployv1.Environment) string {
		if c := condition(e, deployv1.ReadyCondition); c != nil && e.Status.LatestBuild != nil {
			return c.Reason
		}
		return ""
	}, Equal(deployv1.ReasonAutoDeployOff)))
	g.Expect(h.sim.TotalCalls()).To(BeZero())

	// Turning auto-deploy on deploys the recorded build.
	h.updateEnv("prod", func(e *deployv1.Environment) { e.Spec.AutoDeploy = true })
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(deployedImage, Equal(newBuild(1).Image)))
}

func TestOutOfOrderDuplicateAndConflictingManifests(t *testing.T) {
	h := newHarness(t)
	g := h.g
	h.seedService("prod", "shop-api", image("v1"))
	h.createEnv("prod", nil)
	h.startManager()

	g.Expect(h.post(newBuild(5)).Code).To(Equal(http.StatusAccepted))

	r := h.post(newBuild(3))
	g.Expect(r.Code).To(Equal(http.StatusOK), r.Raw)
	g.Expect(r.Body["stale"]).To(ConsistOf(h.ns + "/prod"))

	r = h.post(newBuild(5))
	g.Expect(r.Code).To(Equal(http.StatusOK), r.Raw)
	g.Expect(r.Body["duplicate"]).To(ConsistOf(h.ns + "/prod"))

	impostor := newBuild(5)
	impostor.ID = "shop-api:another-build"
	impostor.Image = image("impostor")
	r = h.post(impostor)
	g.Expect(r.Code).To(Equal(http.StatusConflict), r.Raw)
	g.Expect(r.Body["conflicts"]).To(ConsistOf(h.ns + "/prod"))

	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(deployedImage, Equal(newBuild(5).Image)))
	env := h.getEnv("prod")
	g.Expect(env.Status.LatestBuild.ID).To(Equal(newBuild(5).ID))
	g.Expect(h.sim.Calls("UpdateService")).To(Equal(1))
}

func TestConcurrentManifestsLeaveTheHighestBuild(t *testing.T) {
	h := newHarness(t)
	g := h.g
	h.seedService("prod", "shop-api", image("v1"))
	h.createEnv("prod", nil)
	h.startManager()

	const n = 50
	codes := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i] = h.post(newBuild(int64(i + 1))).Code
		}()
	}
	wg.Wait()
	for i, c := range codes {
		g.Expect(c).To(Or(Equal(http.StatusAccepted), Equal(http.StatusOK)), fmt.Sprintf("build %d", i+1))
	}
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(latestNumber, Equal(int64(n))))
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(deployedImage, Equal(newBuild(n).Image)))
	g.Eventually(func() string { return h.webImage("prod", "shop-api") }, timeout, poll).Should(Equal(newBuild(n).Image))
}

func TestMissingClusterOrServiceStallsWithActionableReason(t *testing.T) {
	h := newHarness(t)
	g := h.g
	h.seedService("prod", "shop-api", image("v1"))
	h.createEnv("no-service", func(e *deployv1.Environment) { e.Spec.ECS.Service = "gone" })
	h.createEnv("no-cluster", func(e *deployv1.Environment) { e.Spec.ECS.Cluster = "nowhere" })
	h.createEnv("no-container", func(e *deployv1.Environment) { e.Spec.ECS.Container = "api" })
	h.startManager()
	g.Expect(h.post(newBuild(1)).Code).To(Equal(http.StatusAccepted))

	for name, reason := range map[string]string{
		"no-service":   deployv1.ReasonServiceNotFound,
		"no-cluster":   deployv1.ReasonClusterNotFound,
		"no-container": deployv1.ReasonContainerNotFound,
	} {
		g.Eventually(h.env(name), timeout, poll).Should(WithTransform(func(e *deployv1.Environment) string {
			if c := condition(e, deployv1.StalledCondition); c != nil && c.Status == metav1.ConditionTrue {
				return c.Reason
			}
			return ""
		}, Equal(reason)), name)
		env := h.getEnv(name)
		ready := condition(env, deployv1.ReadyCondition)
		g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(ready.Reason).To(Equal(reason))
		g.Expect(ready.Message).To(ContainSubstring("spec.ecs."), "the message says what to fix")
		g.Expect(env.Status.PendingDeploy).NotTo(BeNil(), "the deploy stays pending until it can be made")
	}
	// A stalled Environment is not retried in a loop.
	calls := h.sim.TotalCalls()
	g.Consistently(h.sim.TotalCalls, "500ms", poll).Should(Equal(calls))

	// Fixing the spec deploys (to a service of its own: no-container holds prod/shop-api).
	h.seedService("prod", "found", image("v1"))
	h.updateEnv("no-service", func(e *deployv1.Environment) { e.Spec.ECS.Service = "found" })
	g.Eventually(h.env("no-service"), timeout, poll).Should(WithTransform(deployedImage, Equal(newBuild(1).Image)))
	g.Expect(h.webImage("prod", "found")).To(Equal(newBuild(1).Image))

	// Creating the missing cluster and service, then asking for a retry, deploys too.
	h.seedService("nowhere", "shop-api", image("v1"))
	g.Consistently(h.env("no-cluster"), "200ms", poll).Should(WithTransform(deployedImage, BeEmpty()))
	h.updateEnv("no-cluster", func(e *deployv1.Environment) {
		e.Annotations = map[string]string{deployv1.RetryAnnotation: "2026-11-26T10:00:00Z"}
	})
	g.Eventually(h.env("no-cluster"), timeout, poll).Should(WithTransform(deployedImage, Equal(newBuild(1).Image)))
	g.Expect(h.webImage("nowhere", "shop-api")).To(Equal(newBuild(1).Image))
}

func TestThrottlingDelaysButDoesNotLoseDeploys(t *testing.T) {
	h := newHarness(t, withSim(ecssim.WithThrottling(map[ecssim.Category]ecssim.Bucket{
		ecssim.CategoryTaskDefinitionModify: {Burst: 1, RefillPerSecond: 4},
		ecssim.CategoryServiceModify:        {Burst: 1, RefillPerSecond: 4},
	})))
	g := h.g
	const n = 6
	svcs := h.fleet(n, nil)
	h.startManager()
	b := newBuild(1)
	r := h.post(b)
	g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
	g.Expect(r.Body["updated"]).To(HaveLen(n))

	for _, svc := range svcs {
		g.Eventually(h.env(svc), timeout, poll).Should(WithTransform(deployedImage, Equal(b.Image)), svc)
		g.Expect(h.webImage("prod", svc)).To(Equal(b.Image))
		g.Expect(h.sim.Revisions("prod-"+svc)).To(Equal(2), "one new revision per service, throttled or not")
	}
	g.Expect(h.sim.Throttled("RegisterTaskDefinition")+h.sim.Throttled("UpdateService")).To(BeNumerically(">", 0),
		"the simulator must have throttled for this test to mean anything")
}
