package controllers

import (
	"testing"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
)

const (
	decideRepo        = "123456789012.dkr.ecr.us-east-1.amazonaws.com/shop-api"
	decideLatestImage = decideRepo + ":142"
	decideOlderImage  = decideRepo + ":141"
	decidePinImage    = decideRepo + ":137"
)

func decideLatestBuild() *deployv1.Build {
	return &deployv1.Build{ID: "shop-api:9f1c", Number: 142, Image: decideLatestImage, Commit: "3f2c9e1", Branch: "main"}
}

func decideDeploy(image string, build *deployv1.BuildRef, trigger string) *deployv1.Deploy {
	return &deployv1.Deploy{Image: image, Build: build, Trigger: trigger, TaskDefinitionARN: "arn:aws:ecs:us-east-1:123456789012:task-definition/shop-api:41"}
}

var (
	decideLatestRef = &deployv1.BuildRef{ID: "shop-api:9f1c", Number: 142}
	decideOlderRef  = &deployv1.BuildRef{ID: "shop-api:77aa", Number: 141}
	decidePinRef    = &deployv1.BuildRef{ID: "shop-api:0b0b", Number: 137}
)

type decideOpt func(*deployv1.Environment)

func withAutoDeploy(on bool) decideOpt {
	return func(e *deployv1.Environment) { e.Spec.AutoDeploy = on }
}

func withPin(image string) decideOpt {
	return func(e *deployv1.Environment) { e.Spec.PinnedImage = image }
}

func withLatest(b *deployv1.Build) decideOpt {
	return func(e *deployv1.Environment) { e.Status.LatestBuild = b }
}

// deployed records d as the last deploy, as the controller does when one finishes.
func withDeployed(d *deployv1.Deploy) decideOpt {
	return func(e *deployv1.Environment) {
		e.Status.RecordDeploy(*d)
		e.Status.DeployedImage = d.Image
	}
}

func decideEnv(opts ...decideOpt) *deployv1.Environment {
	e := &deployv1.Environment{
		ObjectMeta: metav1.ObjectMeta{Name: "shop-api-prod", Namespace: "shop"},
		Spec: deployv1.EnvironmentSpec{
			Application: "shop-api",
			ECS:         deployv1.ECSTarget{Region: "us-east-1", Cluster: "prod", Service: "shop-api"},
		},
	}
	for _, o := range opts {
		o(e)
	}
	return e
}

func TestDecide(t *testing.T) {
	tests := []struct {
		name string
		env  *deployv1.Environment
		want Desired
		// wantMessage is a part of the message; the message must be set whenever the reason is.
		wantMessage string
	}{
		{
			name: "pin wins over auto-deploy and the latest build",
			env: decideEnv(withAutoDeploy(true), withPin(decidePinImage), withLatest(decideLatestBuild()),
				withDeployed(decideDeploy(decideOlderImage, decideOlderRef, deployv1.TriggerBuild))),
			want: Desired{Image: decidePinImage, Trigger: deployv1.TriggerPin},
		},
		{
			name: "pin with auto-deploy off",
			env:  decideEnv(withPin(decidePinImage), withLatest(decideLatestBuild())),
			want: Desired{Image: decidePinImage, Trigger: deployv1.TriggerPin},
		},
		{
			name: "pin on the latest build's image carries its build",
			env: decideEnv(withAutoDeploy(true), withPin(decideLatestImage), withLatest(decideLatestBuild()),
				withDeployed(decideDeploy(decideOlderImage, decideOlderRef, deployv1.TriggerBuild))),
			want: Desired{Image: decideLatestImage, Build: decideLatestRef, Trigger: deployv1.TriggerPin},
		},
		{
			name: "pin on the deployed image carries the deployed build",
			env: decideEnv(withAutoDeploy(true), withPin(decideOlderImage), withLatest(decideLatestBuild()),
				withDeployed(decideDeploy(decideOlderImage, decideOlderRef, deployv1.TriggerBuild))),
			want: Desired{Image: decideOlderImage, Build: decideOlderRef, Trigger: deployv1.TriggerPin},
		},
		{
			name: "pin already deployed",
			env: decideEnv(withPin(decidePinImage), withLatest(decideLatestBuild()),
				withDeployed(decideDeploy(decidePinImage, decidePinRef, deployv1.TriggerPin))),
			want: Desired{Image: decidePinImage, Build: decidePinRef, Trigger: deployv1.TriggerPin},
		},
		{
			name: "pin before any build",
			env:  decideEnv(withAutoDeploy(true), withPin(decidePinImage)),
			want: Desired{Image: decidePinImage, Trigger: deployv1.TriggerPin},
		},
		{
			name: "auto-deploy on: the latest build",
			env: decideEnv(withAutoDeploy(true), withLatest(decideLatestBuild()),
				withDeployed(decideDeploy(decideOlderImage, decideOlderRef, deployv1.TriggerBuild))),
			want: Desired{Image: decideLatestImage, Build: decideLatestRef, Trigger: deployv1.TriggerBuild},
		},
		{
			name: "auto-deploy on: the first build",
			env:  decideEnv(withAutoDeploy(true), withLatest(decideLatestBuild())),
			want: Desired{Image: decideLatestImage, Build: decideLatestRef, Trigger: deployv1.TriggerBuild},
		},
		{
			name: "auto-deploy on: the latest build already deployed",
			env: decideEnv(withAutoDeploy(true), withLatest(decideLatestBuild()),
				withDeployed(decideDeploy(decideLatestImage, decideLatestRef, deployv1.TriggerBuild))),
			want: Desired{Image: decideLatestImage, Build: decideLatestRef, Trigger: deployv1.TriggerBuild},
		},
		{
			name: "auto-deploy on: after a retried deploy",
			env: decideEnv(withAutoDeploy(true), withLatest(decideLatestBuild()),
				withDeployed(decideDeploy(decideOlderImage, decideOlderRef, deployv1.TriggerRetry))),
			want: Desired{Image: decideLatestImage, Build: decideLatestRef, Trigger: deployv1.TriggerBuild},
		},
		{
			name: "pin removed after a pinned deploy: unpin to the latest build",
			env: decideEnv(withAutoDeploy(true), withLatest(decideLatestBuild()),
				withDeployed(decideDeploy(decidePinImage, decidePinRef, deployv1.TriggerPin))),
			want: Desired{Image: decideLatestImage, Build: decideLatestRef, Trigger: deployv1.TriggerUnpin},
		},
		{
			name: "pin removed after a pinned deploy of an unknown image",
			env: decideEnv(withAutoDeploy(true), withLatest(decideLatestBuild()),
				withDeployed(decideDeploy(decidePinImage, nil, deployv1.TriggerPin))),
			want: Desired{Image: decideLatestImage, Build: decideLatestRef, Trigger: deployv1.TriggerUnpin},
		},
		{
			name: "new build after an unpin deploy",
			env: decideEnv(withAutoDeploy(true), withLatest(decideLatestBuild()),
				withDeployed(decideDeploy(decideOlderImage, decideOlderRef, deployv1.TriggerUnpin))),
			want: Desired{Image: decideLatestImage, Build: decideLatestRef, Trigger: deployv1.TriggerBuild},
		},
		{
			name: "auto-deploy off: the deployed image stays",
			env: decideEnv(withAutoDeploy(false), withLatest(decideLatestBuild()),
				withDeployed(decideDeploy(decideOlderImage, decideOlderRef, deployv1.TriggerBuild))),
			want:        Desired{Image: decideOlderImage, Build: decideOlderRef, Reason: deployv1.ReasonAutoDeployOff},
			wantMessage: "Auto-deploy is off",
		},
		{
			name: "auto-deploy off and pin removed: the pinned image stays",
			env: decideEnv(withLatest(decideLatestBuild()),
				withDeployed(decideDeploy(decidePinImage, nil, deployv1.TriggerPin))),
			want:        Desired{Image: decidePinImage, Reason: deployv1.ReasonAutoDeployOff},
			wantMessage: "Auto-deploy is off",
		},
		{
			name: "auto-deploy off: the deployed latest build stays with its build",
			env: decideEnv(withLatest(decideLatestBuild()),
				withDeployed(decideDeploy(decideLatestImage, nil, deployv1.TriggerPin))),
			want:        Desired{Image: decideLatestImage, Build: decideLatestRef, Reason: deployv1.ReasonAutoDeployOff},
			wantMessage: "Auto-deploy is off",
		},
		{
			name: "auto-deploy off: a build but nothing deployed",
			env:  decideEnv(withLatest(decideLatestBuild())),
			want: Desired{Reason: deployv1.ReasonAutoDeployOff}, wantMessage: "nothing to deploy",
		},
		{
			name: "auto-deploy off and nothing yet",
			env:  decideEnv(),
			want: Desired{Reason: deployv1.ReasonAutoDeployOff}, wantMessage: "nothing to deploy",
		},
		{
			name: "auto-deploy on and nothing yet",
			env:  decideEnv(withAutoDeploy(true)),
			want: Desired{Reason: deployv1.ReasonWaitingForBuild}, wantMessage: "shop-api",
		},
		{
			name: "auto-deploy on, pin removed before any build: the pinned image stays",
			env:  decideEnv(withAutoDeploy(true), withDeployed(decideDeploy(decidePinImage, nil, deployv1.TriggerPin))),
			want: Desired{Image: decidePinImage, Reason: deployv1.ReasonWaitingForBuild}, wantMessage: "shop-api",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			before := tt.env.DeepCopy()
			got := Decide(tt.env)
			g.Expect(tt.env).To(Equal(before), "Decide modified the Environment")

			g.Expect(got.Message).To(ContainSubstring(tt.wantMessage))
			if got.Reason != "" {
				g.Expect(got.Message).NotTo(BeEmpty())
			}
			got.Message = ""
			got.Action, got.Resume = ActionNone, false // TestDecideAgainstTheModel checks actions
			g.Expect(got).To(Equal(tt.want))

			// The build is a copy: changing it leaves the Environment alone.
			if got.Build != nil {
				got.Build.ID, got.Build.Number = "changed", -1
				g.Expect(tt.env).To(Equal(before), "Decide's build aliases the Environment's status")
			}
		})
	}
}

func BenchmarkDecide(b *testing.B) {
	envs := []*deployv1.Environment{
		decideEnv(withAutoDeploy(true), withPin(decideLatestImage), withLatest(decideLatestBuild())),
		decideEnv(withAutoDeploy(true), withLatest(decideLatestBuild()), withDeployed(decideDeploy(decidePinImage, decidePinRef, deployv1.TriggerPin))),
		decideEnv(withLatest(decideLatestBuild()), withDeployed(decideDeploy(decideOlderImage, decideOlderRef, deployv1.TriggerBuild))),
		decideEnv(withAutoDeploy(true)),
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, env := range envs {
			_ = Decide(env)
		}
	}
}

// withFailedRollout records that the deploy of image failed and ECS put previous back.
func withFailedRollout(image, previous string, build *deployv1.BuildRef) decideOpt {
	return func(e *deployv1.Environment) {
		e.Status.RecordDeploy(deployv1.Deploy{Image: image, Build: build, Trigger: deployv1.TriggerBuild,
			PreviousImage: previous, Result: deployv1.ResultFailed, Reason: "tasks failed to start", RolledBack: true})
		e.Status.DeployedImage = previous
	}
}

// TestDecideWithdrawsADeployNoLongerWanted: turning auto-deploy off or removing a pin while a
// deploy is in flight does not finish that deploy blindly, nor forget it: ECS is asked
// whether it reached the service (ActionObserve), and what runs stays.
func TestDecideWithdrawsADeployNoLongerWanted(t *testing.T) {
	inFlight := func(image string, build *deployv1.BuildRef) decideOpt {
		return func(e *deployv1.Environment) {
			e.Status.PendingDeploy = &deployv1.Deploy{Image: image, Build: build, Trigger: deployv1.TriggerBuild}
		}
	}
	cases := []struct {
		name      string
		env       *deployv1.Environment
		wantImage string
	}{
		{"auto-deploy turned off during the first deploy",
			decideEnv(withAutoDeploy(false), withLatest(decideLatestBuild()), inFlight(decideLatestImage, decideLatestRef)), ""},
		{"auto-deploy turned off during a later deploy",
			decideEnv(withAutoDeploy(false), withLatest(decideLatestBuild()),
				withDeployed(decideDeploy(decideOlderImage, decideOlderRef, deployv1.TriggerBuild)), inFlight(decideLatestImage, decideLatestRef)), decideOlderImage},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			d := Decide(tc.env)
			g.Expect(d.Action).To(Equal(ActionObserve))
			g.Expect(d.Image).To(Equal(tc.wantImage))
			g.Expect(d.Reason).To(Equal(deployv1.ReasonAutoDeployOff))
		})
	}
}

func TestDecideHoldsAFailedRolloutUntilSomethingNewIsWanted(t *testing.T) {
	failed := withFailedRollout(decideLatestImage, decideOlderImage, decideLatestRef)
	retryAt := func(v string) decideOpt {
		return func(e *deployv1.Environment) { e.Annotations = map[string]string{deployv1.RetryAnnotation: v} }
	}
	handled := func(v string) decideOpt { return func(e *deployv1.Environment) { e.Status.RetryHandled = v } }
	pendingRetry := func(e *deployv1.Environment) {
		e.Status.PendingDeploy = &deployv1.Deploy{Image: decideLatestImage, Trigger: deployv1.TriggerRetry}
	}
	cases := []struct {
		name      string
		env       *deployv1.Environment
		wantImage string
		held      bool
		force     bool
		trigger   string
	}{
		{name: "the failed build stays held: what ECS rolled back to is desired",
			env:       decideEnv(withAutoDeploy(true), withLatest(decideLatestBuild()), failed),
			wantImage: decideOlderImage, held: true},
		{name: "a retry request already handled does not retry again",
			env:       decideEnv(withAutoDeploy(true), withLatest(decideLatestBuild()), failed, retryAt("1"), handled("1")),
			wantImage: decideOlderImage, held: true},
		{name: "a new retry request redeploys the failed build",
			env:       decideEnv(withAutoDeploy(true), withLatest(decideLatestBuild()), failed, retryAt("2"), handled("1")),
			wantImage: decideLatestImage, force: true, trigger: deployv1.TriggerRetry},
		{name: "a retry interrupted by an ECS error goes on",
			env:       decideEnv(withAutoDeploy(true), withLatest(decideLatestBuild()), failed, retryAt("2"), handled("2"), pendingRetry),
			wantImage: decideLatestImage, force: true, trigger: deployv1.TriggerRetry},
		{name: "a newer build moves on",
			env: decideEnv(withAutoDeploy(true), failed, withLatest(&deployv1.Build{ID: "shop-api:next", Number: 143,
				Image: decideRepo + ":143"})),
			wantImage: decideRepo + ":143", trigger: deployv1.TriggerBuild},
		{name: "a pin moves on",
			env:       decideEnv(withAutoDeploy(true), withLatest(decideLatestBuild()), failed, withPin(decidePinImage)),
			wantImage: decidePinImage, trigger: deployv1.TriggerPin},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			d := Decide(tc.env)
			g.Expect(d.Image).To(Equal(tc.wantImage))
			g.Expect(d.Held).To(Equal(tc.held))
			g.Expect(d.Force).To(Equal(tc.force))
			if tc.held {
				g.Expect(d.Reason).To(Equal(deployv1.ReasonRolloutFailed))
				g.Expect(d.Message).To(And(ContainSubstring("build 142"), ContainSubstring(deployv1.RetryAnnotation)))
			} else {
				g.Expect(d.Trigger).To(Equal(tc.trigger))
			}
		})
	}
}
