package controllers

import (
	"fmt"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
)

// Desired is what should run on an Environment's service, decided from the Environment alone.
type Desired struct {
	// Image is the image that should run; empty when there is nothing to deploy yet.
	Image string
	// Build is the build Image came from, when it is a known build.
	Build *deployv1.BuildRef
	// Trigger says why Image differs from what is deployed.
	Trigger string
	// Reason and Message explain the decision when nothing is to be deployed.
	Reason, Message string
	// Held is true when the wanted image failed to roll out and is not retried until a new
	// build, a pin or a retry request.
	Held bool
	// Force redeploys Image even if it is what the service was last updated to (a retry).
	Force bool
}

// Decide applies the deploy rules: a pin wins; otherwise the latest build when auto-deploy
// is on; otherwise what is deployed stays. An image whose rollout failed is held back (not
// retried in a loop) until something new is wanted or a retry is requested.
func Decide(env *deployv1.Environment) Desired {
	d := decide(env)
	last := env.Status.LastDeploy()
	if last == nil || last.Result != deployv1.ResultFailed || d.Image != last.Image {
		return d
	}
	retry := env.Annotations[deployv1.RetryAnnotation]
	pending := env.Status.PendingDeploy
	if (retry != "" && retry != env.Status.RetryHandled) ||
		(pending != nil && pending.Image == d.Image && pending.Trigger == deployv1.TriggerRetry) {
		// A new retry request, or one under way that an ECS error interrupted.
		d.Trigger, d.Force = deployv1.TriggerRetry, true
		return d
	}
	what := d.Image
	if last.Build != nil {
		what = fmt.Sprintf("build %d (%s)", last.Build.Number, d.Image)
	}
	return Desired{
		Image: env.Status.DeployedImage, Build: buildOf(env, env.Status.DeployedImage), Held: true,
		Reason: deployv1.ReasonRolloutFailed,
		Message: fmt.Sprintf("The rollout of %s failed (%s); it is not retried: publish a new build, pin an image, or set the %s annotation to a new value",
			what, last.Reason, deployv1.RetryAnnotation),
	}
}

// buildOf returns the build image came from, when it is known.
func buildOf(env *deployv1.Environment, image string) *deployv1.BuildRef {
	if latest := env.Status.LatestBuild; latest != nil && latest.Image == image {
		return &deployv1.BuildRef{ID: latest.ID, Number: latest.Number}
	}
	for _, d := range env.Status.History {
		if d.Image == image && d.Build != nil {
			b := *d.Build
			return &b
		}
	}
	return nil
}

func decide(env *deployv1.Environment) Desired {
	latest := env.Status.LatestBuild
	buildOf := func(image string) *deployv1.BuildRef { return buildOf(env, image) }
	if pin := env.Spec.PinnedImage; pin != "" {
		return Desired{Image: pin, Build: buildOf(pin), Trigger: deployv1.TriggerPin}
	}
	if env.Spec.AutoDeploy && latest != nil {
		trigger := deployv1.TriggerBuild
		if last := env.Status.LastDeploy(); last != nil && last.Trigger == deployv1.TriggerPin {
			trigger = deployv1.TriggerUnpin
		}
		return Desired{Image: latest.Image, Build: buildOf(latest.Image), Trigger: trigger}
	}
	// Nothing new is wanted: what is deployed stays. A deploy that already started (its
	// intent is recorded and it may have reached the service) is finished, not undone:
	// turning auto-deploy off or removing a pin stops new deploys, it does not roll back.
	stays := Desired{Reason: deployv1.ReasonAutoDeployOff, Message: "Auto-deploy is off: new builds are recorded, not deployed"}
	if env.Spec.AutoDeploy {
		// Only reached with no build yet, for example after a pin was deployed and removed.
		stays.Reason, stays.Message = deployv1.ReasonWaitingForBuild, "Waiting for the first build of "+env.Spec.Application
	}
	switch pending, deployed := env.Status.PendingDeploy, env.Status.DeployedImage; {
	case pending != nil:
		stays.Image, stays.Build, stays.Trigger = pending.Image, pending.Build, pending.Trigger
	case deployed != "":
		stays.Image, stays.Build = deployed, buildOf(deployed)
	case !env.Spec.AutoDeploy:
		stays.Message = "Auto-deploy is off and nothing is pinned: nothing to deploy"
	}
	return stays
}
