package app_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
)

const logRouterImage = "public.ecr.aws/aws-observability/aws-for-fluent-bit:2.32.0"

func workerImage(tag string) string {
	return "123456789012.dkr.ecr.us-east-1.amazonaws.com/shop-worker:" + tag
}

// seedSetService creates cluster/service running a task definition of three containers: web
// and worker (built together) and a log router nobody builds.
func (h *harness) seedSetService(cluster, service, webImage, workerImg string) string {
	h.t.Helper()
	return h.seedTaskService(h.sim.DefaultAccount(), cluster, service, map[string]any{
		"networkMode": "awsvpc", "requiresCompatibilities": []string{"FARGATE"}, "cpu": "512", "memory": "1024",
		"containerDefinitions": []any{
			map[string]any{"name": "web", "image": webImage, "essential": true,
				"portMappings": []any{map[string]any{"containerPort": 8080, "protocol": "tcp"}}},
			map[string]any{"name": "worker", "image": workerImg, "essential": true,
				"environment": []any{map[string]any{"name": "QUEUE", "value": "orders"}}},
			map[string]any{"name": "log-router", "image": logRouterImage, "essential": false},
		},
		"tags": []any{map[string]any{"key": "team", "value": "shop"}},
	})
}

// setBody is the manifest of build n with an image for web (image) and, when workerImg is
// set, for worker (images).
func setBody(n int64, workerImg string) []byte {
	b := newBuild(n)
	m := map[string]any{"application": b.App, "buildId": b.ID, "buildNumber": b.Number, "image": b.Image, "branch": b.Branch}
	if workerImg != "" {
		m["images"] = map[string]string{"worker": workerImg}
	}
	raw, _ := json.Marshal(m)
	return raw
}

func withSet(e *deployv1.Environment) {
	e.Spec.ECS.Container, e.Spec.ECS.Containers = "", []string{"web", "worker"}
}

func deployedImages(env *deployv1.Environment) map[string]string {
	if env == nil {
		return nil
	}
	return env.Status.DeployedImages
}

// TestOneBuildDeploysEveryContainerInOneRevision: a build with an image for web and worker
// goes out as one revision and one ECS deployment; both containers run their images, the
// log router is untouched, and the status shows both.
func TestOneBuildDeploysEveryContainerInOneRevision(t *testing.T) {
	h := newHarness(t)
	g := h.g
	family := h.seedSetService("prod", "shop-api", image("v1"), workerImage("v1"))
	h.createEnv("prod", withSet)
	h.startManager()

	r := h.postSigned(setBody(142, workerImage("b142")), testKey, time.Now())
	g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
	g.Expect(r.Body).NotTo(HaveKey("incomplete"))
	want := map[string]string{"web": newBuild(142).Image, "worker": workerImage("b142")}
	g.Eventually(h.env("prod"), timeout, poll).Should(And(
		WithTransform(deployedImages, Equal(want)),
		WithTransform(rolloutResult, Equal(deployv1.ResultCompleted))))

	g.Expect(h.sim.Calls("RegisterTaskDefinition")).To(Equal(1))
	g.Expect(h.sim.Calls("UpdateService")).To(Equal(1))
	g.Expect(h.sim.Revisions(family)).To(Equal(2))
	g.Expect(h.containerImage("prod", "shop-api", "web")).To(Equal(want["web"]))
	g.Expect(h.containerImage("prod", "shop-api", "worker")).To(Equal(want["worker"]))
	g.Expect(h.containerImage("prod", "shop-api", "log-router")).To(Equal(logRouterImage))
	tags, _ := h.sim.TaskDefinitionTags(family + ":2")
	g.Expect(tags).To(HaveKeyWithValue("autodeploy.dev/build-number", "142"), "one build, one provenance")

	env := h.getEnv("prod")
	g.Expect(env.Status.DeployedImage).To(Equal(want["web"]), "the single image field is the primary container's")
	g.Expect(env.Status.DesiredImages).To(Equal(want))
	last := env.Status.LastDeploy()
	g.Expect(last.Images).To(Equal(want))
	g.Expect(last.PreviousImages).To(Equal(map[string]string{"web": image("v1"), "worker": workerImage("v1")}))
	g.Expect(env.Status.Target.Containers).To(Equal([]string{"web", "worker"}))
	g.Expect(condition(env, deployv1.ReadyCondition).Reason).To(Equal(deployv1.ReasonDeployed))

	// A pin of the set rolls both back in one revision and holds against the next build.
	pins := map[string]string{"web": image("v1"), "worker": workerImage("v1")}
	h.updateEnv("prod", func(e *deployv1.Environment) { e.Spec.PinnedImages = pins })
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(deployedImages, Equal(pins)))
	g.Expect(h.sim.Calls("RegisterTaskDefinition")).To(Equal(2))
	g.Expect(h.sim.Calls("UpdateService")).To(Equal(2))
	g.Expect(h.getEnv("prod").Status.LastDeploy().Trigger).To(Equal(deployv1.TriggerPin))
	g.Expect(condition(h.getEnv("prod"), deployv1.PinnedCondition).Message).To(ContainSubstring("web=" + image("v1")))

	r = h.postSigned(setBody(143, workerImage("b143")), testKey, time.Now())
	g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(latestNumber, Equal(int64(143))))
	g.Consistently(h.env("prod"), "300ms", poll).Should(WithTransform(deployedImages, Equal(pins)))
	g.Expect(h.sim.Calls("RegisterTaskDefinition")).To(Equal(2))
	g.Expect(h.sim.Calls("UpdateService")).To(Equal(2))
	g.Expect(h.containerImage("prod", "shop-api", "worker")).To(Equal(workerImage("v1")))

	// Unpinning deploys the newest build's set.
	h.updateEnv("prod", func(e *deployv1.Environment) { e.Spec.PinnedImages = nil })
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(deployedImages,
		Equal(map[string]string{"web": newBuild(143).Image, "worker": workerImage("b143")})))
	g.Expect(h.containerImage("prod", "shop-api", "worker")).To(Equal(workerImage("b143")))
}

// TestBuildMissingAContainerImageIsRecordedAndNotDeployed: a build with no image for worker
// is recorded (the answer says which Environment will not deploy it), and the Environment
// reports MissingContainerImage naming the container, with no ECS call.
func TestBuildMissingAContainerImageIsRecordedAndNotDeployed(t *testing.T) {
	h := newHarness(t)
	g := h.g
	h.seedSetService("prod", "shop-api", image("v1"), workerImage("v1"))
	h.createEnv("prod", withSet)
	h.startManager()

	r := h.postSigned(setBody(142, ""), testKey, time.Now())
	g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
	g.Expect(r.Body["incomplete"]).To(ConsistOf(h.ns + "/prod: no image for container worker"))
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(func(e *deployv1.Environment) string {
		if c := condition(e, deployv1.ReadyCondition); c != nil && c.Status == metav1.ConditionFalse {
			return c.Reason
		}
		return ""
	}, Equal(deployv1.ReasonMissingContainerImage)))
	env := h.getEnv("prod")
	g.Expect(env.Status.LatestBuild.Number).To(Equal(int64(142)))
	g.Expect(condition(env, deployv1.ReadyCondition).Message).To(ContainSubstring(`container "worker"`))
	g.Expect(condition(env, deployv1.StalledCondition).Status).To(Equal(metav1.ConditionTrue))
	g.Expect(env.Status.PendingDeploy).To(BeNil())
	g.Expect(h.sim.TotalCalls()).To(BeZero())
}

// TestCodeBuildEventDeploysAContainerSet: a CodeBuild event exporting IMAGE_URI and
// AUTODEPLOY_IMAGE_WORKER deploys both containers in one revision.
func TestCodeBuildEventDeploysAContainerSet(t *testing.T) {
	h := newHarness(t)
	g := h.g
	keys := [][]byte{[]byte(ecsEventKey)}
	h.eventKeys.Store(&keys)
	h.seedSetService("prod", "shop-api", image("v1"), workerImage("v1"))
	h.createEnv("prod", func(e *deployv1.Environment) { withSet(e); e.Spec.Branch = "" })
	h.startManager()

	ev := editEvent(codeBuildEvent("cb-1", "arn:aws:codebuild:us-east-1:123456789012:build/shop-api:1", 55), func(ev map[string]any) {
		evInfo(ev)["exported-environment-variables"] = []any{
			map[string]any{"name": "IMAGE_URI", "value": image("cb55"), "type": "PLAINTEXT"},
			map[string]any{"name": "AUTODEPLOY_IMAGE_WORKER", "value": workerImage("cb55"), "type": "PLAINTEXT"},
			map[string]any{"name": "AUTODEPLOY_APPLICATION", "value": "shop-api", "type": "PLAINTEXT"},
		}
	})
	r := h.postEvent("/v1/events", ev, ecsEventKey)
	g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
	want := map[string]string{"web": image("cb55"), "worker": workerImage("cb55")}
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(deployedImages, Equal(want)))
	g.Expect(h.getEnv("prod").Status.LatestBuild.Images).To(Equal(map[string]string{"worker": workerImage("cb55")}))
	g.Expect(h.sim.Calls("RegisterTaskDefinition")).To(Equal(1))
	g.Expect(h.sim.Calls("UpdateService")).To(Equal(1))
	g.Expect(h.containerImage("prod", "shop-api", "worker")).To(Equal(workerImage("cb55")))

	// A bad image in a container variable is refused, naming the variable.
	bad := editEvent(codeBuildEvent("cb-2", "arn:aws:codebuild:us-east-1:123456789012:build/shop-api:2", 56), func(ev map[string]any) {
		evInfo(ev)["exported-environment-variables"] = []any{
			map[string]any{"name": "IMAGE_URI", "value": image("cb56"), "type": "PLAINTEXT"},
			map[string]any{"name": "AUTODEPLOY_IMAGE_WORKER", "value": "not an image", "type": "PLAINTEXT"},
		}
	})
	r = h.postEvent("/v1/events", bad, ecsEventKey)
	g.Expect(r.Code).To(Equal(http.StatusBadRequest), r.Raw)
	g.Expect(r.Body["error"]).To(ContainSubstring("AUTODEPLOY_IMAGE_WORKER"))
}

// TestContainerSetMissingFromTheTaskDefinitionStalls: a managed container the service's task
// definition does not have is ContainerNotFound naming it, with no revision registered.
func TestContainerSetMissingFromTheTaskDefinitionStalls(t *testing.T) {
	h := newHarness(t)
	g := h.g
	h.seedService("prod", "shop-api", image("v1")) // web and log-router, no worker
	h.createEnv("prod", withSet)
	h.startManager()

	g.Expect(h.postSigned(setBody(142, workerImage("b142")), testKey, time.Now()).Code).To(Equal(http.StatusAccepted))
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(func(e *deployv1.Environment) string {
		if c := condition(e, deployv1.StalledCondition); c != nil && c.Status == metav1.ConditionTrue {
			return c.Reason + ": " + c.Message
		}
		return ""
	}, And(HavePrefix(deployv1.ReasonContainerNotFound), ContainSubstring(`container "worker" is not in the task definition`))))
	g.Expect(h.sim.Calls("RegisterTaskDefinition")).To(BeZero())
	g.Expect(h.sim.Calls("UpdateService")).To(BeZero())
}

// TestContainerSetValidation: the API server refuses ambiguous container sets and partial pins.
func TestContainerSetValidation(t *testing.T) {
	h := newHarness(t)
	g := h.g
	cases := []struct {
		name   string
		mutate func(*deployv1.Environment)
		msg    string
	}{
		{"both forms", func(e *deployv1.Environment) { e.Spec.ECS.Containers = []string{"web", "worker"} },
			"set spec.ecs.container (one container) or spec.ecs.containers"},
		{"a duplicate", func(e *deployv1.Environment) { withSet(e); e.Spec.ECS.Containers = []string{"web", "web"} },
			"Duplicate value"},
		{"a pin of some containers", func(e *deployv1.Environment) {
			withSet(e)
			e.Spec.PinnedImages = map[string]string{"web": image("v1")}
		}, "spec.pinnedImages must name an image for exactly the containers of spec.ecs.containers"},
		{"a pin of other containers", func(e *deployv1.Environment) {
			withSet(e)
			e.Spec.PinnedImages = map[string]string{"web": image("v1"), "worker": workerImage("v1"), "cron": workerImage("v1")}
		}, "exactly the containers"},
		{"a set pinned by pinnedImage", func(e *deployv1.Environment) { withSet(e); e.Spec.PinnedImage = image("v1") },
			"pin them all with spec.pinnedImages"},
		{"both pins", func(e *deployv1.Environment) {
			withSet(e)
			e.Spec.PinnedImage = image("v1")
			e.Spec.PinnedImages = map[string]string{"web": image("v1"), "worker": workerImage("v1")}
		}, "set spec.pinnedImage or spec.pinnedImages, not both"},
		{"pinnedImages without containers", func(e *deployv1.Environment) { e.Spec.PinnedImages = map[string]string{"web": image("v1")} },
			"exactly the containers"},
		{"an empty image", func(e *deployv1.Environment) {
			withSet(e)
			e.Spec.PinnedImages = map[string]string{"web": "", "worker": workerImage("v1")}
		}, "every image of spec.pinnedImages must be an image reference"},
	}
	for i, tc := range cases {
		env := &deployv1.Environment{
			ObjectMeta: metav1.ObjectMeta{Name: "bad-" + string(rune('a'+i)), Namespace: h.ns},
			Spec: deployv1.EnvironmentSpec{Application: "shop-api",
				ECS: deployv1.ECSTarget{Region: "us-east-1", Cluster: "prod", Service: "shop-api", Container: "web"}},
		}
		tc.mutate(env)
		err := k8sClient.Create(context.Background(), env)
		g.Expect(err).To(HaveOccurred(), tc.name)
		g.Expect(err.Error()).To(ContainSubstring(tc.msg), tc.name)
	}
	// The set, its pin, and a one-container set with pinnedImage are accepted.
	ok := []func(*deployv1.Environment){
		withSet,
		func(e *deployv1.Environment) {
			withSet(e)
			e.Spec.PinnedImages = map[string]string{"web": image("v1"), "worker": workerImage("v1")}
		},
		func(e *deployv1.Environment) {
			e.Spec.ECS.Container, e.Spec.ECS.Containers, e.Spec.PinnedImage = "", []string{"web"}, image("v1")
		},
	}
	for i, mutate := range ok {
		env := &deployv1.Environment{
			ObjectMeta: metav1.ObjectMeta{Name: "good-" + string(rune('a'+i)), Namespace: h.ns},
			Spec: deployv1.EnvironmentSpec{Application: "shop-api",
				ECS: deployv1.ECSTarget{Region: "us-east-1", Cluster: "prod", Service: "shop-api", Container: "web"}},
		}
		mutate(env)
		g.Expect(k8sClient.Create(context.Background(), env)).To(Succeed())
	}
}

// TestPostManifestScriptSendsAContainerSet: IMAGES becomes the manifest's images, and the set
// deploys; a build without it is recorded, the script warning that it is incomplete.
func TestPostManifestScriptSendsAContainerSet(t *testing.T) {
	requireShellTools(t)
	h := newHarness(t)
	g := h.g
	h.seedSetService("prod", "shop-api", image("v1"), workerImage("v1"))
	h.createEnv("prod", withSet)
	h.startManager()

	b := newBuild(142)
	vars := scriptVars(h.mgr.receiverURL, b)
	vars["IMAGES"] = "worker=" + workerImage("b142")
	r := runPostManifest(t, "sh", vars)
	g.Expect(r.exitCode).To(BeZero(), r.String())
	g.Expect(r.stdout).To(ContainSubstring("HTTP 202"))
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(deployedImages,
		Equal(map[string]string{"web": b.Image, "worker": workerImage("b142")})))
	g.Expect(h.containerImage("prod", "shop-api", "worker")).To(Equal(workerImage("b142")))

	r = runPostManifest(t, "sh", scriptVars(h.mgr.receiverURL, newBuild(143)))
	g.Expect(r.exitCode).To(BeZero(), r.String())
	g.Expect(r.stdout).To(ContainSubstring(`"incomplete":["` + h.ns + `/prod: no image for container worker"]`))
	g.Expect(r.stderr).To(ContainSubstring("warning: the Environments listed in incomplete"))

	vars = scriptVars(h.mgr.receiverURL, newBuild(144))
	vars["IMAGES"] = "worker"
	r = runPostManifest(t, "sh", vars)
	g.Expect(r.exitCode).To(Equal(2), r.String())
	g.Expect(r.stderr).To(ContainSubstring("IMAGES must be container=image pairs"))
}
