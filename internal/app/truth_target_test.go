package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/ecssim"
	"github.com/autodeploy-dev/autodeploy/internal/receiver"
)

// These tests pin down behaviour the issue reports as wrong: each one fails on the reconciler
// and receiver as they were when the issue was filed and passes once the behaviour is right.

// truthBDeployAndComplete posts b and waits until the Environment has deployed it and the
// rollout completed.
func truthBDeployAndComplete(h *harness, name string, b build) {
	h.t.Helper()
	r := h.post(b)
	h.g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
	h.g.Eventually(h.env(name), timeout, poll).Should(And(
		WithTransform(deployedImage, Equal(b.Image)),
		WithTransform(rolloutResult, Equal(deployv1.ResultCompleted))))
}

// truthBExpectDeployedTo waits until the Environment's target (cluster, service, container)
// runs want, status.deployedImage is what that container runs, and history[0] is the deploy
// that put it there: a revision of family, the one the service now runs.
func truthBExpectDeployedTo(h *harness, name, cluster, service, container, family, want string) {
	h.t.Helper()
	h.g.Eventually(func(g Gomega) {
		env := &deployv1.Environment{}
		g.Expect(k8sClient.Get(context.Background(), types.NamespacedName{Namespace: h.ns, Name: name}, env)).To(Succeed())
		running := h.containerImage(cluster, service, container)
		g.Expect(running).To(Equal(want), "container %s of %s/%s runs the desired image", container, cluster, service)
		g.Expect(env.Status.DeployedImage).To(Equal(running), "status.deployedImage is what the target runs")
		g.Expect(env.Status.History).NotTo(BeEmpty())
		last := env.Status.History[0]
		g.Expect(last.Image).To(Equal(want))
		g.Expect(last.TaskDefinitionARN).To(ContainSubstring(":task-definition/"+family+":"),
			"history[0] is a deploy to the new target")
		svc, _ := h.sim.Service(cluster, service)
		g.Expect(last.TaskDefinitionARN).To(Equal(svc.TaskDefinitionARN), "history[0] is the revision the target runs")
	}, timeout, poll).Should(Succeed())
}

// truthBObserved waits until the reconciler acted on the Environment's current generation.
func truthBObserved(h *harness, name string) {
	h.t.Helper()
	h.g.Eventually(h.env(name), timeout, poll).Should(WithTransform(func(e *deployv1.Environment) bool {
		return e != nil && e.Status.ObservedGeneration == e.Generation
	}, BeTrue()))
}

// truthBWebBuild is build n of the application shop-web.
func truthBWebBuild(n int64) build {
	return build{App: "shop-web", ID: fmt.Sprintf("shop-web:build-%d", n), Branch: "main",
		Image: fmt.Sprintf("123456789012.dkr.ecr.us-east-1.amazonaws.com/shop-web:b%d", n), Number: n}
}

// truthBHistoryImages lists the images of the Environment's history, newest first.
func truthBHistoryImages(env *deployv1.Environment) []string {
	var out []string
	for _, d := range env.Status.History {
		out = append(out, d.Image)
	}
	return out
}

// TestTruthRetargetToAnotherServiceDeploysThere is scenario 3 (a change of target is never
// deployed), another service: X runs on S1, the user points spec.ecs.service at S2, which runs
// W. It checks that S2 ends up running the latest build, status.deployedImage is S2's image and
// history[0] is a deploy of S2's family, while S1 is left as it was.
func TestTruthRetargetToAnotherServiceDeploysThere(t *testing.T) {
	h := newHarness(t)
	g := h.g
	h.seedService("prod", "shop-api", image("v1"))
	s2 := h.seedService("prod", "shop-api-2", image("w"))
	h.createEnv("prod", nil)
	h.startManager()
	b := newBuild(10)
	truthBDeployAndComplete(h, "prod", b)

	h.updateEnv("prod", func(e *deployv1.Environment) { e.Spec.ECS.Service = "shop-api-2" })
	truthBExpectDeployedTo(h, "prod", "prod", "shop-api-2", "web", s2, b.Image)
	g.Expect(h.webImage("prod", "shop-api")).To(Equal(b.Image), "the old target is left alone")
}

// TestTruthRetargetToAnotherClusterDeploysThere is scenario 3 (a change of target is never
// deployed), another cluster: the user points spec.ecs.cluster at a cluster whose service of
// the same name runs W. It checks that the service there ends up running the latest build and
// that status and history[0] describe that deploy.
func TestTruthRetargetToAnotherClusterDeploysThere(t *testing.T) {
	h := newHarness(t)
	h.seedService("prod", "shop-api", image("v1"))
	staging := h.seedService("staging", "shop-api", image("w"))
	h.createEnv("prod", nil)
	h.startManager()
	b := newBuild(10)
	truthBDeployAndComplete(h, "prod", b)

	h.updateEnv("prod", func(e *deployv1.Environment) { e.Spec.ECS.Cluster = "staging" })
	truthBExpectDeployedTo(h, "prod", "staging", "shop-api", "web", staging, b.Image)
}

// TestTruthRetargetToAnotherContainerDeploysThere is scenario 3 (a change of target is never
// deployed), another container: the task definition has two containers (web and log-router);
// the user points spec.ecs.container from web at log-router. It checks that log-router ends up
// running the latest build, in a new revision that history[0] records.
func TestTruthRetargetToAnotherContainerDeploysThere(t *testing.T) {
	h := newHarness(t)
	g := h.g
	family := h.seedService("prod", "shop-api", image("v1"))
	h.createEnv("prod", nil)
	h.startManager()
	b := newBuild(10)
	truthBDeployAndComplete(h, "prod", b)
	g.Expect(h.containerImage("prod", "shop-api", "log-router")).NotTo(Equal(b.Image))
	webRevision := h.getEnv("prod").Status.LastDeploy().TaskDefinitionARN

	h.updateEnv("prod", func(e *deployv1.Environment) { e.Spec.ECS.Container = "log-router" })
	truthBExpectDeployedTo(h, "prod", "prod", "shop-api", "log-router", family, b.Image)
	g.Expect(h.getEnv("prod").Status.LastDeploy().TaskDefinitionARN).NotTo(Equal(webRevision),
		"the image went into the log-router container of a new revision")
}

// TestTruthRetargetPinnedEnvironmentAppliesThePin is scenario 3 (a change of target is never
// deployed) for a pinned Environment: pin P is deployed on S1, the user points spec.ecs at S2
// running W. It checks that P is applied to S2.
func TestTruthRetargetPinnedEnvironmentAppliesThePin(t *testing.T) {
	h := newHarness(t)
	g := h.g
	h.seedService("prod", "shop-api", image("v1"))
	s2 := h.seedService("prod", "shop-api-2", image("w"))
	pin := image("p")
	h.createEnv("prod", func(e *deployv1.Environment) { e.Spec.PinnedImage = pin })
	h.startManager()
	g.Eventually(h.env("prod"), timeout, poll).Should(And(
		WithTransform(deployedImage, Equal(pin)),
		WithTransform(rolloutResult, Equal(deployv1.ResultCompleted))))
	g.Expect(h.webImage("prod", "shop-api")).To(Equal(pin))

	h.updateEnv("prod", func(e *deployv1.Environment) { e.Spec.ECS.Service = "shop-api-2" })
	truthBExpectDeployedTo(h, "prod", "prod", "shop-api-2", "web", s2, pin)
}

// TestTruthApplicationSwitchRecordsTheNewApplicationsBuilds is scenario 4 (status.latestBuild
// outlives a change of application): an Environment at build 500 of shop-api is switched to
// shop-web, whose builds are numbered around 20. It checks that shop-web build 20 is recorded
// (202, the Environment in "updated") and deployed, not answered "stale".
func TestTruthApplicationSwitchRecordsTheNewApplicationsBuilds(t *testing.T) {
	h := newHarness(t)
	g := h.g
	h.seedService("prod", "shop-api", image("v1"))
	h.createEnv("prod", nil)
	h.startManager()
	truthBDeployAndComplete(h, "prod", newBuild(500))

	h.updateEnv("prod", func(e *deployv1.Environment) { e.Spec.Application = "shop-web" })
	// The reconciler saw the new spec, so the receiver's cache indexes it under shop-web.
	truthBObserved(h, "prod")

	b := truthBWebBuild(20)
	r := h.post(b)
	g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
	g.Expect(r.Body["result"]).To(Equal(receiver.ResultRecorded), r.Raw)
	g.Expect(r.Body["updated"]).To(ConsistOf(h.ns+"/prod"), r.Raw)
	g.Eventually(h.env("prod"), timeout, poll).Should(And(
		WithTransform(latestNumber, Equal(b.Number)),
		WithTransform(deployedImage, Equal(b.Image))))
	g.Expect(h.getEnv("prod").Status.LatestBuild.ID).To(Equal(b.ID))
	g.Eventually(func() string { return h.webImage("prod", "shop-api") }, timeout, poll).Should(Equal(b.Image))
}

// TestTruthApplicationSwitchWithAutoDeployOnDeploysNothingOfTheOldApplication is scenario 4
// (status.latestBuild outlives a change of application): build 500 of shop-api is recorded
// with auto-deploy off; one edit switches the application to shop-web and turns auto-deploy
// on. It checks that nothing of shop-api is deployed (no new revision, no UpdateService) and
// that the first shop-web build then is.
func TestTruthApplicationSwitchWithAutoDeployOnDeploysNothingOfTheOldApplication(t *testing.T) {
	h := newHarness(t)
	g := h.g
	family := h.seedService("prod", "shop-api", image("v1"))
	h.createEnv("prod", func(e *deployv1.Environment) { e.Spec.AutoDeploy = false })
	h.startManager()
	old := newBuild(500)
	r := h.post(old)
	g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(latestNumber, Equal(int64(500))))

	h.updateEnv("prod", func(e *deployv1.Environment) {
		e.Spec.Application = "shop-web"
		e.Spec.AutoDeploy = true
	})
	truthBObserved(h, "prod")
	noDeploy := func() int { return h.sim.Calls("RegisterTaskDefinition") + h.sim.Calls("UpdateService") }
	g.Expect(noDeploy()).To(BeZero(), "the build of shop-api is not deployed to a shop-web Environment")
	g.Consistently(noDeploy, "1s", poll).Should(BeZero(), "the build of shop-api is not deployed to a shop-web Environment")
	g.Expect(h.webImage("prod", "shop-api")).To(Equal(image("v1")))
	g.Expect(h.sim.Revisions(family)).To(Equal(1))

	b := truthBWebBuild(20)
	r = h.post(b)
	g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
	g.Expect(r.Body["updated"]).To(ConsistOf(h.ns+"/prod"), r.Raw)
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(deployedImage, Equal(b.Image)))
	g.Eventually(func() string { return h.webImage("prod", "shop-api") }, timeout, poll).Should(Equal(b.Image))
	g.Expect(truthBHistoryImages(h.getEnv("prod"))).NotTo(ContainElement(old.Image))
}

// TestTruthCodeBuildBuildAfterECRPushesIsRecorded is scenario 4 (status.latestBuild outlives a
// change of build source): an application that took builds from ECR push events (numbered by
// Unix time) switches to CodeBuild (small build numbers). It checks that a CodeBuild build
// that finished after the pushes is recorded (202, the Environment in "updated") and deployed.
func TestTruthCodeBuildBuildAfterECRPushesIsRecorded(t *testing.T) {
	h := newHarness(t)
	g := h.g
	h.seedService("prod", "shop-api", image("v1"))
	h.createEnv("prod", func(e *deployv1.Environment) { e.Spec.Application = "my-sample-project"; e.Spec.Branch = "" })
	h.setTenantKeys(h.ns, map[string]string{receiver.SecretEventBridgeKey: eventKeyA})
	h.startManager()
	path := eventsPath(h.ns)

	start := time.Now().Add(-10 * time.Minute).UTC().Truncate(time.Second)
	var pushed string
	for i := range 2 {
		at := start.Add(time.Duration(i) * time.Minute)
		digest := fmt.Sprintf("sha256:%064x", i+1)
		ev := editEvent(eventFixture("ecr-push.json"), func(ev map[string]any) {
			ev["id"] = fmt.Sprintf("truth-push-%d", i)
			ev["time"] = at.Format(time.RFC3339)
			evDetail(ev)["repository-name"] = "my-sample-project"
			evDetail(ev)["image-digest"] = digest
		})
		r := h.postEvent(path, ev, eventKeyA)
		g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
		pushed = "123456789012.dkr.ecr.us-west-2.amazonaws.com/my-sample-project@" + digest
		g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(deployedImage, Equal(pushed)))
	}
	g.Expect(latestNumber(h.getEnv("prod"))).To(Equal(start.Add(time.Minute).Unix()))
	g.Expect(h.webImage("prod", "shop-api")).To(Equal(pushed))

	// The project now builds in CodeBuild: build 56, finished after the pushes.
	const buildID = "arn:aws:codebuild:us-west-2:123456789012:build/my-sample-project:truth-56"
	const built = "123456789012.dkr.ecr.us-west-2.amazonaws.com/my-sample-project:my-source-version"
	cb := editEvent(codeBuildEvent("truth-codebuild-56", buildID, 56), func(ev map[string]any) {
		ev["time"] = time.Now().UTC().Format(time.RFC3339)
	})
	r := h.postEvent(path, cb, eventKeyA)
	g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
	g.Expect(r.Body["result"]).To(Equal(receiver.ResultRecorded), r.Raw)
	g.Expect(r.Body["updated"]).To(ConsistOf(h.ns+"/prod"), r.Raw)
	g.Eventually(h.env("prod"), timeout, poll).Should(And(
		WithTransform(func(e *deployv1.Environment) string {
			if e == nil || e.Status.LatestBuild == nil {
				return ""
			}
			return e.Status.LatestBuild.ID
		}, Equal(buildID)),
		WithTransform(deployedImage, Equal(built))))
	g.Eventually(func() string { return h.webImage("prod", "shop-api") }, timeout, poll).Should(Equal(built))
}

// TestTruthSupersededDeployIsClosedInHistory is scenario 8 (history entries stuck at
// InProgress): with slow rollouts, build 2 is deployed while build 1 still rolls out. It checks
// that history[1] (build 1) is closed as Superseded with a finishedAt, and stays so when build
// 2's rollout completes.
func TestTruthSupersededDeployIsClosedInHistory(t *testing.T) {
	h := newHarness(t, withSim(ecssim.WithRolloutDuration(time.Hour)))
	g := h.g
	h.seedService("prod", "shop-api", image("v1"))
	h.createEnv("prod", nil)
	h.startManager()

	b1 := newBuild(1)
	g.Expect(h.post(b1).Code).To(Equal(http.StatusAccepted))
	g.Eventually(h.env("prod"), timeout, poll).Should(And(
		WithTransform(deployedImage, Equal(b1.Image)),
		WithTransform(rolloutResult, Equal(deployv1.ResultInProgress))))
	b2 := newBuild(2)
	g.Expect(h.post(b2).Code).To(Equal(http.StatusAccepted))
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(deployedImage, Equal(b2.Image)))

	superseded := func(g Gomega) {
		hist := h.getEnv("prod").Status.History
		g.Expect(hist).To(HaveLen(2))
		g.Expect(hist[0].Image).To(Equal(b2.Image))
		g.Expect(hist[1].Image).To(Equal(b1.Image))
		g.Expect(hist[1].Result).To(Equal(deployv1.ResultSuperseded), "build 1's deploy was replaced by build 2's")
		g.Expect(hist[1].FinishedAt).NotTo(BeNil())
	}
	g.Eventually(superseded, timeout, poll).Should(Succeed())

	g.Expect(h.sim.CompleteDeployment("prod", "shop-api")).To(Succeed())
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(rolloutResult, Equal(deployv1.ResultCompleted)))
	superseded(g)
}

// TestTruthDeletedEnvironmentIsNoLongerTracked is scenario 10 (deleted Environments stay
// tracked): an Environment is deleted while its rollout is in progress (polling on). It checks
// that the tracker's DescribeServices calls stop: the count stops moving and then stays put.
func TestTruthDeletedEnvironmentIsNoLongerTracked(t *testing.T) {
	var lastDescribe atomic.Int64
	observe := func(c ecssim.Call) {
		if c.Operation == "DescribeServices" {
			lastDescribe.Store(time.Now().UnixNano())
		}
	}
	h := newHarness(t, withSim(ecssim.WithRolloutDuration(time.Hour), ecssim.WithCallObserver(observe)))
	g := h.g
	h.seedService("prod", "shop-api", image("v1"))
	h.createEnv("prod", nil)
	h.startManager()

	g.Expect(h.post(newBuild(1)).Code).To(Equal(http.StatusAccepted))
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(rolloutResult, Equal(deployv1.ResultInProgress)))
	describes := func() int { return h.sim.Calls("DescribeServices") }
	// The tracker is polling the rollout.
	polled := describes()
	g.Eventually(describes, timeout, poll).Should(BeNumerically(">=", polled+2))

	env := h.getEnv("prod")
	g.Expect(k8sClient.Delete(context.Background(), env)).To(Succeed())
	g.Eventually(func() bool {
		err := k8sClient.Get(context.Background(), types.NamespacedName{Namespace: h.ns, Name: "prod"}, &deployv1.Environment{})
		return apierrors.IsNotFound(err)
	}, timeout, poll).Should(BeTrue())

	// The tracker's longest interval is 400ms: a second without a call means it stopped.
	g.Eventually(func() time.Duration { return time.Since(time.Unix(0, lastDescribe.Load())) }, timeout, poll).
		Should(BeNumerically(">", time.Second), "DescribeServices calls about the deleted Environment stop")
	stopped := describes()
	g.Consistently(describes, "1500ms", poll).Should(Equal(stopped))
}

// truthBTouch sets a label on the Environment through the API server, so that a status write
// based on the object read before conflicts.
func truthBTouch(ns, name string) error {
	var err error
	for range 20 {
		env := &deployv1.Environment{}
		if err = k8sClient.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, env); err != nil {
			return err
		}
		if env.Labels == nil {
			env.Labels = map[string]string{}
		}
		env.Labels["truth.autodeploy.dev/touched"] = "true"
		if err = k8sClient.Update(context.Background(), env); !apierrors.IsConflict(err) {
			return err
		}
	}
	return err
}

// TestTruthStatusConflictAfterDeployRepeatsNoECSRead is scenario 11 (a conflict repeats the ECS
// reads): the status write after UpdateService conflicts (a label is edited right after
// UpdateService answers). It checks that the deploy still makes exactly as many
// DescribeServices and DescribeTaskDefinition calls as the same deploy without a conflict,
// measured first on another Environment and service.
func TestTruthStatusConflictAfterDeployRepeatsNoECSRead(t *testing.T) {
	var ns atomic.Pointer[string]
	var touched atomic.Bool
	var touchErr atomic.Pointer[error]
	observe := func(c ecssim.Call) {
		if c.Operation != "UpdateService" || c.ErrorCode != "" {
			return
		}
		var in struct{ Service string }
		if json.Unmarshal(c.Body, &in) != nil || in.Service != "svc-conflict" || !touched.CompareAndSwap(false, true) {
			return
		}
		// Runs before the controller gets UpdateService's answer.
		if err := truthBTouch(*ns.Load(), "conflict"); err != nil {
			touchErr.Store(&err)
		}
	}
	// No polling: the rollout tracker's DescribeServices calls would blur the count.
	h := newHarness(t, withoutPolling(), withSim(ecssim.WithCallObserver(observe)))
	ns.Store(&h.ns)
	g := h.g
	h.seedService("prod", "svc-plain", image("v1"))
	h.seedService("prod", "svc-conflict", image("v1"))
	for _, name := range []string{"plain", "conflict"} {
		h.createEnv(name, func(e *deployv1.Environment) {
			e.Spec.Application = "app-" + name
			e.Spec.ECS.Service = "svc-" + name
		})
	}
	h.startManager()
	deploy := func(name string) build {
		b := build{App: "app-" + name, ID: "app-" + name + ":build-1", Branch: "main", Image: image(name + "-1"), Number: 1}
		r := h.post(b)
		g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
		g.Expect(r.Body["updated"]).To(ConsistOf(h.ns+"/"+name), r.Raw)
		g.Eventually(h.env(name), timeout, poll).Should(And(
			WithTransform(deployedImage, Equal(b.Image)),
			WithTransform(func(e *deployv1.Environment) bool { return e != nil && e.Status.PendingDeploy == nil }, BeTrue())))
		g.Expect(h.webImage("prod", "svc-"+name)).To(Equal(b.Image))
		return b
	}

	// A deploy without a conflict.
	h.sim.ResetCalls()
	deploy("plain")
	describeServices, describeTaskDefinition := h.sim.Calls("DescribeServices"), h.sim.Calls("DescribeTaskDefinition")
	g.Expect(h.sim.Calls("RegisterTaskDefinition")).To(Equal(1))
	g.Expect(h.sim.Calls("UpdateService")).To(Equal(1))
	g.Expect(touched.Load()).To(BeFalse())

	// The same deploy, with the status write after UpdateService conflicting.
	h.sim.ResetCalls()
	deploy("conflict")
	g.Expect(touched.Load()).To(BeTrue(), "the label was edited after UpdateService")
	g.Expect(touchErr.Load()).To(BeNil())
	g.Expect(h.getEnv("conflict").Labels).To(HaveKeyWithValue("truth.autodeploy.dev/touched", "true"))
	g.Expect(h.sim.Calls("RegisterTaskDefinition")).To(Equal(1))
	g.Expect(h.sim.Calls("UpdateService")).To(Equal(1))
	g.Expect(h.sim.Calls("DescribeServices")).To(Equal(describeServices), "the conflict repeats no DescribeServices")
	g.Expect(h.sim.Calls("DescribeTaskDefinition")).To(Equal(describeTaskDefinition), "the conflict repeats no DescribeTaskDefinition")
}

// TestTruthRecreatedEnvironmentDoesNotDowngrade is scenario 12 (a recreated Environment
// downgrades): build 10 is deployed, the Environment deleted and re-applied with the same spec,
// then the older build 7 is delivered late. It checks that build 7 is recorded as the latest
// build but not deployed: the service keeps running build 10's image.
func TestTruthRecreatedEnvironmentDoesNotDowngrade(t *testing.T) {
	h := newHarness(t)
	g := h.g
	family := h.seedService("prod", "shop-api", image("v1"))
	h.createEnv("prod", nil)
	h.startManager()
	b10 := newBuild(10)
	truthBDeployAndComplete(h, "prod", b10)
	updates, revisions := h.sim.Calls("UpdateService"), h.sim.Revisions(family)

	old := h.getEnv("prod")
	g.Expect(k8sClient.Delete(context.Background(), old)).To(Succeed())
	g.Eventually(func() bool {
		env := &deployv1.Environment{}
		err := k8sClient.Get(context.Background(), types.NamespacedName{Namespace: h.ns, Name: "prod"}, env)
		return apierrors.IsNotFound(err)
	}, timeout, poll).Should(BeTrue())
	h.createEnv("prod", nil)
	// The reconciler saw the new Environment (so the receiver's cache has it).
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(func(e *deployv1.Environment) bool {
		return e != nil && e.UID != old.UID && condition(e, deployv1.ReadyCondition) != nil
	}, BeTrue()))

	b7 := newBuild(7)
	r := h.post(b7)
	g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
	g.Expect(r.Body["updated"]).To(ConsistOf(h.ns+"/prod"), r.Raw)
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(latestNumber, Equal(int64(7))))
	g.Consistently(func() string { return h.webImage("prod", "shop-api") }, "1500ms", poll).
		Should(Equal(b10.Image), "the older build 7 is not deployed over build 10")
	g.Expect(h.sim.Calls("UpdateService")).To(Equal(updates))
	g.Expect(h.sim.Revisions(family)).To(Equal(revisions))
	env := h.getEnv("prod")
	g.Expect(env.Status.DeployedImage).NotTo(Equal(b7.Image))
	g.Expect(truthBHistoryImages(env)).NotTo(ContainElement(b7.Image))
}

// truthBNamesBuild reports whether some tag whose key starts with "autodeploy" has the build
// id in its value, or the build number as its value.
func truthBNamesBuild(tags map[string]string, b build) bool {
	for k, v := range tags {
		if strings.HasPrefix(strings.ToLower(k), "autodeploy") &&
			(strings.Contains(v, b.ID) || v == fmt.Sprint(b.Number)) {
			return true
		}
	}
	return false
}

// TestTruthRegisteredRevisionsNameTheirBuild is scenario 12 (a recreated Environment
// downgrades), the record that makes a downgrade detectable without the Environment's status:
// it checks that every revision the controller registers carries a tag naming the build it
// carries (and not the build of the revision it was copied from), besides the tags it copied.
func TestTruthRegisteredRevisionsNameTheirBuild(t *testing.T) {
	h := newHarness(t)
	g := h.g
	h.seedService("prod", "shop-api", image("v1"))
	h.createEnv("prod", nil)
	h.startManager()

	var previous *build
	for _, n := range []int64{10, 11} {
		b := newBuild(n)
		truthBDeployAndComplete(h, "prod", b)
		arn := h.getEnv("prod").Status.LastDeploy().TaskDefinitionARN
		svc, _ := h.sim.Service("prod", "shop-api")
		g.Expect(svc.TaskDefinitionARN).To(Equal(arn))
		tags, ok := h.sim.TaskDefinitionTags(arn)
		g.Expect(ok).To(BeTrue())
		g.Expect(tags).To(HaveKeyWithValue("team", "shop"), "the tags of the revision it was copied from are kept")
		g.Expect(truthBNamesBuild(tags, b)).To(BeTrue(), "a tag of %s names build %s: %v", arn, b.ID, tags)
		if previous != nil {
			g.Expect(truthBNamesBuild(tags, *previous)).To(BeFalse(), "the tags of %s name only its own build: %v", arn, tags)
		}
		previous = &b
	}
}

// The randomized drill's find (seed 1796173832643227193): spec.ecs is pointed at another
// service while a deploy to the first one is answered, so the status write after its
// UpdateService conflicts. The deploy must be recorded against the service it went to (not
// the one the live spec names by then), and the new service must then be deployed to:
// status.deployedImage never describes a service that does not run it.
func TestTruthRetargetDuringADeployIsDeployedToo(t *testing.T) {
	w := &truthAWatch{}
	h := truthAHarness(t, w, true)
	g := h.g
	h.seedService("prod", "shop-api", image("v1"))
	h.seedService("prod", "shop-api-2", image("w"))
	h.createEnv("prod", nil)
	h.startManager()

	touched := w.after(truthAOp("UpdateService", ""), func() error {
		return truthAEdit(truthAKey(h, "prod"), func(e *deployv1.Environment) { e.Spec.ECS.Service = "shop-api-2" })
	})
	b := newBuild(5)
	g.Expect(h.post(b).Code).To(Equal(http.StatusAccepted))
	g.Eventually(touched, timeout, poll).Should(BeTrue())
	g.Expect(w.err()).To(Succeed())
	g.Eventually(h.env("prod"), timeout, poll).Should(And(
		WithTransform(func(e *deployv1.Environment) string {
			if e.Status.Target == nil || e.Status.PendingDeploy != nil {
				return ""
			}
			return e.Status.Target.Service
		}, Equal("shop-api-2")),
		WithTransform(deployedImage, Equal(b.Image))))
	g.Expect(h.webImage("prod", "shop-api-2")).To(Equal(b.Image), "the new service runs what the status says")
	g.Expect(h.webImage("prod", "shop-api")).To(Equal(b.Image))
	env := h.getEnv("prod")
	g.Expect(env.Status.LastDeploy().Trigger).To(Equal(deployv1.TriggerTarget), "%+v", env.Status.History)
	g.Expect(env.Status.History).To(HaveLen(2), "one deploy to each service")
}

// The randomized drill's find (seed 1796176234783859590): a pin moved to another service
// (trigger Target) is still a pin. Pinned to build 5's image, the Environment moves to a
// service that runs the newer build 10: the pin is applied there, not refused as a downgrade.
func TestTruthPinMovedToAServiceRunningANewerBuildIsApplied(t *testing.T) {
	w := &truthAWatch{}
	h := truthAHarness(t, w, true)
	g := h.g
	h.seedService("prod", "shop-api", image("v1"))
	h.seedService("prod", "shop-api-2", image("v1"))
	h.createEnv("prod", nil)
	h.startManager()

	b5, b10 := newBuild(5), newBuild(10)
	for _, b := range []build{b5, b10} {
		g.Expect(h.post(b).Code).To(Equal(http.StatusAccepted))
		g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(deployedImage, Equal(b.Image)))
	}
	moveTo := func(svc string) {
		h.updateEnv("prod", func(e *deployv1.Environment) { e.Spec.ECS.Service = svc })
		g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(func(e *deployv1.Environment) string {
			if e.Status.Target == nil || e.Status.PendingDeploy != nil || e.Status.ObservedGeneration != e.Generation {
				return ""
			}
			return e.Status.Target.Service
		}, Equal(svc)))
	}
	moveTo("shop-api-2")
	g.Expect(h.webImage("prod", "shop-api-2")).To(Equal(b10.Image), "build 10 goes along")
	h.updateEnv("prod", func(e *deployv1.Environment) { e.Spec.PinnedImage = b5.Image })
	g.Eventually(func() string { return h.webImage("prod", "shop-api-2") }, timeout, poll).Should(Equal(b5.Image))

	moveTo("shop-api") // runs build 10
	g.Eventually(func() string { return h.webImage("prod", "shop-api") }, timeout, poll).Should(Equal(b5.Image), "the pin holds on the new service")
	env := h.getEnv("prod")
	g.Expect(env.Status.DeployedImage).To(Equal(b5.Image))
	g.Expect(env.Status.LastDeploy().Trigger).To(Equal(deployv1.TriggerTarget))
}

// TestTruthRetargetBackReusesTheRevisionOfTheImage: a pinned Environment deployed to service A
// moves to B and back to A, where someone rolled the service back meanwhile. The deploy back to
// A finds the revision of the pin its first deploy registered there and uses it again: no twin
// revision of the same image (one more DescribeTaskDefinition, for a deploy to a new target only).
func TestTruthRetargetBackReusesTheRevisionOfTheImage(t *testing.T) {
	h := newHarness(t)
	g := h.g
	famA := h.seedService("prod", "shop-api", image("v1"))
	h.seedService("prod", "shop-api-2", image("w"))
	pin := image("p")
	h.createEnv("prod", func(e *deployv1.Environment) { e.Spec.PinnedImage = pin })
	h.startManager()
	g.Eventually(h.env("prod"), timeout, poll).Should(And(
		WithTransform(deployedImage, Equal(pin)),
		WithTransform(rolloutResult, Equal(deployv1.ResultCompleted))))
	g.Expect(h.sim.Revisions(famA)).To(Equal(2))

	h.updateEnv("prod", func(e *deployv1.Environment) { e.Spec.ECS.Service = "shop-api-2" })
	g.Eventually(func() string {
		last := h.getEnv("prod").Status.LastDeploy()
		return last.TaskDefinitionARN + " " + last.Result
	}, timeout, poll).Should(Equal("arn:aws:ecs:us-east-1:123456789012:task-definition/prod-shop-api-2:2 " + deployv1.ResultCompleted))
	// A person rolls shop-api back to its first revision.
	_, err := h.sdk().UpdateService(context.Background(), &ecs.UpdateServiceInput{
		Cluster: aws.String("prod"), Service: aws.String("shop-api"), TaskDefinition: aws.String(famA + ":1")})
	g.Expect(err).NotTo(HaveOccurred())

	h.updateEnv("prod", func(e *deployv1.Environment) { e.Spec.ECS.Service = "shop-api" })
	g.Eventually(func() string { return h.webImage("prod", "shop-api") }, timeout, poll).Should(Equal(pin))
	// The status records the deploy after ECS answered it.
	g.Eventually(func() string {
		last := h.getEnv("prod").Status.LastDeploy()
		return last.Trigger + " " + last.TaskDefinitionARN + " " + last.Result
	}, timeout, poll).Should(Equal(deployv1.TriggerTarget + " arn:aws:ecs:us-east-1:123456789012:task-definition/" + famA + ":2 " + deployv1.ResultCompleted))
	g.Expect(h.sim.Revisions(famA)).To(Equal(2), "the pin's revision is used again, not registered twice")
}
