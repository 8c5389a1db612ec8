package controllers

import (
	"testing"

	. "github.com/onsi/gomega"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
)

const (
	decideWorkerImage    = decideRepo + "-worker:142"
	decideOldWorkerImage = decideRepo + "-worker:141"
	decidePinWorkerImage = decideRepo + "-worker:137"
)

func withContainers(names ...string) decideOpt {
	return func(e *deployv1.Environment) { e.Spec.ECS.Containers = names }
}

// withDeployedSet records d (with its images) as the last deploy, and what runs.
func withDeployedSet(d *deployv1.Deploy) decideOpt {
	return func(e *deployv1.Environment) {
		e.Status.RecordDeploy(*d)
		e.Status.DeployedImage, e.Status.DeployedImages, e.Status.DeployedBuild = d.Image, d.Images, d.Build
		t := e.Spec.ECS
		e.Status.Target = &t
	}
}

func setBuild(images map[string]string) *deployv1.Build {
	b := decideLatestBuild()
	b.Images = images
	return b
}

func TestDecideContainerSet(t *testing.T) {
	both := map[string]string{"web": decideLatestImage, "worker": decideWorkerImage}
	older := map[string]string{"web": decideOlderImage, "worker": decideOldWorkerImage}
	pins := map[string]string{"web": decidePinImage, "worker": decidePinWorkerImage}
	deployedOlder := &deployv1.Deploy{Image: decideOlderImage, Images: older, Build: decideOlderRef, Trigger: deployv1.TriggerBuild, Result: deployv1.ResultCompleted}
	cases := []struct {
		name       string
		env        *deployv1.Environment
		action     Action
		image      string
		images     map[string]string
		trigger    string
		held       bool
		reason     string
		msgContain string
	}{
		{name: "a build with an image for every container deploys the set",
			env:    decideEnv(withContainers("web", "worker"), withAutoDeploy(true), withLatest(setBuild(map[string]string{"worker": decideWorkerImage}))),
			action: ActionDeploy, image: decideLatestImage, images: both, trigger: deployv1.TriggerBuild},
		{name: "images names the primary container's image over image",
			env: decideEnv(withContainers("web", "worker"), withAutoDeploy(true),
				withLatest(setBuild(map[string]string{"web": decideRepo + ":own", "worker": decideWorkerImage}))),
			action: ActionDeploy, image: decideRepo + ":own", images: map[string]string{"web": decideRepo + ":own", "worker": decideWorkerImage}, trigger: deployv1.TriggerBuild},
		{name: "a build missing a container's image is not deployed",
			env: decideEnv(withContainers("web", "worker"), withAutoDeploy(true), withLatest(setBuild(nil)),
				withDeployedSet(deployedOlder)),
			action: ActionNone, image: decideOlderImage, images: older, held: true, reason: deployv1.ReasonMissingContainerImage,
			msgContain: `Build 142 names no image for container "worker" of spec.ecs.containers`},
		{name: "the set running is up to date",
			env: decideEnv(withContainers("web", "worker"), withAutoDeploy(true), withLatest(setBuild(map[string]string{"worker": decideWorkerImage})),
				withDeployedSet(&deployv1.Deploy{Image: decideLatestImage, Images: both, Build: decideLatestRef, Trigger: deployv1.TriggerBuild, Result: deployv1.ResultCompleted})),
			action: ActionNone, image: decideLatestImage, images: both},
		{name: "one container off is not up to date",
			env: decideEnv(withContainers("web", "worker"), withAutoDeploy(true), withLatest(setBuild(map[string]string{"worker": decideWorkerImage})),
				withDeployedSet(&deployv1.Deploy{Image: decideLatestImage, Images: map[string]string{"web": decideLatestImage, "worker": decideOldWorkerImage},
					Trigger: deployv1.TriggerPin, Result: deployv1.ResultCompleted})),
			action: ActionDeploy, image: decideLatestImage, images: both, trigger: deployv1.TriggerUnpin},
		{name: "a pin of the set wins over a new build",
			env: decideEnv(withContainers("web", "worker"), withAutoDeploy(true), withLatest(setBuild(map[string]string{"worker": decideWorkerImage})),
				withDeployedSet(deployedOlder), func(e *deployv1.Environment) { e.Spec.PinnedImages = pins }),
			action: ActionDeploy, image: decidePinImage, images: pins, trigger: deployv1.TriggerPin},
		{name: "a pin of the set that runs holds",
			env: decideEnv(withContainers("web", "worker"), withAutoDeploy(true), withLatest(setBuild(map[string]string{"worker": decideWorkerImage})),
				withDeployedSet(&deployv1.Deploy{Image: decidePinImage, Images: pins, Trigger: deployv1.TriggerPin, Result: deployv1.ResultCompleted}),
				func(e *deployv1.Environment) { e.Spec.PinnedImages = pins }),
			action: ActionNone, image: decidePinImage, images: pins, trigger: deployv1.TriggerPin},
		{name: "a pin of some containers is refused, not half applied",
			env: decideEnv(withContainers("web", "worker"), withAutoDeploy(true), withDeployedSet(deployedOlder),
				func(e *deployv1.Environment) { e.Spec.PinnedImages = map[string]string{"web": decidePinImage} }),
			action: ActionNone, image: decideOlderImage, images: older, held: true, reason: deployv1.ReasonMissingContainerImage,
			msgContain: `spec.pinnedImages names no image for container "worker"`},
		{name: "a failed rollout of the set holds the build",
			env: decideEnv(withContainers("web", "worker"), withAutoDeploy(true), withLatest(setBuild(map[string]string{"worker": decideWorkerImage})),
				withDeployedSet(deployedOlder), func(e *deployv1.Environment) {
					e.Status.RecordDeploy(deployv1.Deploy{Image: decideLatestImage, Images: both, Build: decideLatestRef, Trigger: deployv1.TriggerBuild,
						Result: deployv1.ResultFailed, RolledBack: true, Reason: "circuit breaker"})
				}),
			action: ActionNone, image: decideOlderImage, images: older, held: true, reason: deployv1.ReasonRolloutFailed},
		{name: "adding a container to the set deploys to the new target",
			env: decideEnv(withContainers("web"), withAutoDeploy(true), withLatest(setBuild(map[string]string{"worker": decideWorkerImage})),
				withDeployedSet(&deployv1.Deploy{Image: decideLatestImage, Build: decideLatestRef, Trigger: deployv1.TriggerBuild, Result: deployv1.ResultCompleted}),
				withContainers("web", "worker")),
			action: ActionDeploy, image: decideLatestImage, images: both, trigger: deployv1.TriggerTarget},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			d := Decide(tc.env)
			g.Expect(d.Action).To(Equal(tc.action), "%+v", d)
			g.Expect(d.Image).To(Equal(tc.image))
			g.Expect(d.Images).To(Equal(tc.images))
			g.Expect(d.Held).To(Equal(tc.held))
			g.Expect(d.Reason).To(Equal(tc.reason))
			if tc.trigger != "" {
				g.Expect(d.Trigger).To(Equal(tc.trigger))
			}
			g.Expect(d.Message).To(ContainSubstring(tc.msgContain))
		})
	}
}

// container: web and containers: [web] name the same target: switching forms deploys nothing.
func TestSingleContainerFormsAreOneTarget(t *testing.T) {
	g := NewWithT(t)
	env := decideEnv(withAutoDeploy(true), withLatest(decideLatestBuild()), func(e *deployv1.Environment) { e.Spec.ECS.Container = "web" },
		withDeployedSet(&deployv1.Deploy{Image: decideLatestImage, Build: decideLatestRef, Trigger: deployv1.TriggerBuild, Result: deployv1.ResultCompleted}))
	g.Expect(Decide(env).Action).To(Equal(ActionNone))
	env.Spec.ECS.Container, env.Spec.ECS.Containers = "", []string{"web"}
	d := Decide(env)
	g.Expect(d.Action).To(Equal(ActionNone))
	g.Expect(d.Images).To(BeNil(), "a single container records no image set")
	env.Spec.ECS.Containers = []string{"api"}
	g.Expect(Decide(env).Trigger).To(Equal(deployv1.TriggerTarget))
}
