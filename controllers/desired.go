package controllers

import (
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
}

// Decide applies the deploy rules: a pin wins; otherwise the latest build when auto-deploy
// is on; otherwise what is deployed stays.
func Decide(env *deployv1.Environment) Desired {
	latest := env.Status.LatestBuild
	buildOf := func(image string) *deployv1.BuildRef {
		if latest != nil && latest.Image == image {
			return &deployv1.BuildRef{ID: latest.ID, Number: latest.Number}
		}
		if last := env.Status.LastDeploy; last != nil && last.Image == image && last.Build != nil {
			b := *last.Build
			return &b
		}
		return nil
	}

	if pin := env.Spec.PinnedImage; pin != "" {
		return Desired{Image: pin, Build: buildOf(pin), Trigger: deployv1.TriggerPin}
	}
	if env.Spec.AutoDeploy && latest != nil {
		trigger := deployv1.TriggerBuild
		if last := env.Status.LastDeploy; last != nil && last.Trigger == deployv1.TriggerPin {
			trigger = deployv1.TriggerUnpin
		}
		return Desired{Image: latest.Image, Build: buildOf(latest.Image), Trigger: trigger}
	}
	if deployed := env.Status.DeployedImage; deployed != "" {
		if env.Spec.AutoDeploy {
			// Only reached with no build yet, for example after a pin was deployed and removed.
			return Desired{Image: deployed, Build: buildOf(deployed), Trigger: deployv1.TriggerRestore, Reason: deployv1.ReasonWaitingForBuild,
				Message: "Waiting for the first build of " + env.Spec.Application}
		}
		return Desired{Image: deployed, Build: buildOf(deployed), Trigger: deployv1.TriggerRestore, Reason: deployv1.ReasonAutoDeployOff,
			Message: "Auto-deploy is off: new builds are recorded, not deployed"}
	}
	if !env.Spec.AutoDeploy {
		return Desired{Reason: deployv1.ReasonAutoDeployOff,
			Message: "Auto-deploy is off and nothing is pinned: nothing to deploy"}
	}
	return Desired{Reason: deployv1.ReasonWaitingForBuild, Message: "Waiting for the first build of " + env.Spec.Application}
}
