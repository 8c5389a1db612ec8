package controllers

import (
	"fmt"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/eventbridge"
)

// Action is what a reconcile must do to the ECS service.
type Action int

const (
	// ActionNone: the service is known to run what is wanted, or nothing is wanted: no ECS call.
	ActionNone Action = iota
	// ActionDeploy: deploy Desired.Image (a new deploy, or the pending one).
	ActionDeploy
	// ActionObserve: the pending deploy is no longer wanted and may or may not have reached
	// the service: look at the service and record what runs, updating nothing.
	ActionObserve
	// ActionWithdraw: the pending deploy is no longer wanted and is known never to have
	// reached the service (it stalled): drop it, with no ECS call.
	ActionWithdraw
)

func (a Action) String() string {
	switch a {
	case ActionDeploy:
		return "Deploy"
	case ActionObserve:
		return "Observe"
	case ActionWithdraw:
		return "Withdraw"
	default:
		return "None"
	}
}

// Desired is what should run on an Environment's service and what to do about it, decided
// from the Environment alone.
type Desired struct {
	// Action is what the reconcile must do.
	Action Action
	// Image is the image that should run (in the primary container); empty when nothing in
	// particular is wanted (what runs stays).
	Image string
	// Images is the image of every managed container when spec.ecs.containers names several;
	// nil otherwise.
	Images map[string]string
	// Build is the build Image came from, when it is a known build.
	Build *deployv1.BuildRef
	// Trigger says why Image is deployed: Build, Pin, Unpin, Retry or Target.
	Trigger string
	// Reason and Message explain the decision when nothing is deployed.
	Reason, Message string
	// Held is true when the wanted build failed to roll out and is not retried until a new
	// build, a pin or a retry request.
	Held bool
	// Force makes ECS start a new deployment even if the service already runs Image (a retry).
	Force bool
	// Resume is true when Action is ActionDeploy of the deploy already pending: it may have
	// reached the service before it was interrupted, so ECS is asked what became of it first.
	Resume bool
}

// Decide applies the deploy rules to an Environment:
//
//   - A pin wins. Otherwise the latest build of spec.application (and spec.branch) when
//     auto-deploy is on. Otherwise nothing new is wanted and what runs stays; but when
//     spec.ecs names another service or container than the one deployed to, the Environment
//     takes what it ran there along (the deploy's trigger is then Target).
//   - The unit of a deploy is the build: a new build with the image reference of the one
//     deployed (a mutable tag) is deployed again. A pin names an image and is satisfied by it.
//   - A build older than the one the service runs (same application) is never deployed
//     unless a pin asks for it.
//   - A build whose newest rollout failed is held: not retried until a new build, a pin or a
//     new value of the retry annotation (which is answered once, whether or not anything
//     has failed).
//   - A pending deploy that is no longer wanted is withdrawn: without an ECS call when it
//     stalled before reaching the service, else after looking at what the service runs.
//   - With several containers (spec.ecs.containers) the unit is the set: a build that names
//     no image for one of them is not deployed (reason MissingContainerImage), and what
//     runs is compared container by container.
func Decide(env *deployv1.Environment) Desired {
	st := &env.Status
	w, want, missing := wanted(env)
	if !want {
		return withPending(env, w, false)
	}
	pending := st.PendingDeploy
	known := targetKnown(env)

	// A build older than what runs is not deployed over it.
	if w.Trigger != deployv1.TriggerPin && known && olderThan(w.Build, st.DeployedBuild) {
		w = Desired{
			Image: st.DeployedImage, Images: st.DeployedImages, Build: st.DeployedBuild, Reason: deployv1.ReasonNewerBuildRunning,
			Message: fmt.Sprintf("The service runs build %d, newer than build %d: it is not deployed over it", st.DeployedBuild.Number, w.Build.Number),
		}
		return withPending(env, w, false)
	}
	if missing != "" {
		held := Desired{
			Image: st.DeployedImage, Images: st.DeployedImages, Build: st.DeployedBuild, Held: true, Reason: deployv1.ReasonMissingContainerImage,
			Message: missingMessage(env, w, missing),
		}
		return withPending(env, held, false)
	}

	{
		if failed := newestFailed(st, w); failed != nil {
			if retryRequested(env) || (pending != nil && pending.Trigger == deployv1.TriggerRetry && samePending(pending, w)) {
				w.Trigger, w.Force = deployv1.TriggerRetry, true
			} else {
				held := Desired{
					Image: st.DeployedImage, Images: st.DeployedImages, Build: st.DeployedBuild, Held: true, Reason: deployv1.ReasonRolloutFailed,
					Message: fmt.Sprintf("The rollout of %s failed (%s); it is not retried: publish a new build, pin an image, or set the %s annotation to a new value",
						describe(w.Image, w.Build), failed.Reason, deployv1.RetryAnnotation),
				}
				return withPending(env, held, false)
			}
		}
	}
	if g := gateOn(env, w); g != nil {
		return gated(env, g)
	}
	return withPending(env, w, true)
}

// gateOn returns the gate recorded in status.gate that holds back a new deploy of w, or nil:
// a pin and the deploy pending pass every gate (and what runs is never gated: the reconciler
// records a gate only for a build that would be deployed).
func gateOn(env *deployv1.Environment, w Desired) *deployv1.Gate {
	st := &env.Status
	g := st.Gate
	if g == nil || !blockingGate(g.Reason) || w.Trigger == deployv1.TriggerPin || env.Spec.Pinned() || !deployv1.SameBuild(g.Build, w.Build) {
		return nil
	}
	if p := st.PendingDeploy; p != nil && p.Result != deployv1.ResultStalled && samePending(p, w) && w.Force == (p.Trigger == deployv1.TriggerRetry) {
		return nil // withPending finishes it
	}
	return g
}

// gated decides for an Environment whose wanted build waits at gate g: a deploy pending (it
// may have reached the service before a restart) is finished; otherwise what runs stays.
func gated(env *deployv1.Environment, g *deployv1.Gate) Desired {
	st := &env.Status
	if p := st.PendingDeploy; p != nil && p.Result != deployv1.ResultStalled {
		return withPending(env, Desired{Image: p.Image, Images: p.Images, Build: p.Build, Trigger: p.Trigger, Force: p.Trigger == deployv1.TriggerRetry}, true)
	}
	return withPending(env, Desired{Image: st.DeployedImage, Images: st.DeployedImages, Build: st.DeployedBuild, Reason: g.Reason, Message: g.Message}, false)
}

// withPending decides the action for w given the pending deploy: deploying w is wanted
// when want is true (and w is not already what runs).
func withPending(env *deployv1.Environment, w Desired, want bool) Desired {
	st := &env.Status
	pending := st.PendingDeploy
	needed := want && needsDeploy(env, w)
	switch {
	case pending == nil:
		if needed {
			w.Action = ActionDeploy
		}
	case want && samePending(pending, w) && (w.Force == (pending.Trigger == deployv1.TriggerRetry)):
		// The deploy under way is still the one wanted: finish it, unless it stalled and
		// nothing changed since (a spec change or a retry request tries it again).
		if pending.Result == deployv1.ResultStalled && !retryRequested(env) && stalledAt(env) == env.Generation {
			w.Action, w.Reason, w.Message = ActionNone, stalledReason(env), pending.Reason
			return w
		}
		w.Action, w.Resume = ActionDeploy, pending.Result != deployv1.ResultStalled
		w.Trigger = pending.Trigger
	case needed:
		// Something else is wanted now: a new deploy replaces the pending one (it reads what
		// runs before changing anything, so a pending deploy that did reach the service is
		// seen as the previous image).
		w.Action = ActionDeploy
	case pending.Result == deployv1.ResultStalled:
		w.Action = ActionWithdraw
	default:
		w.Action = ActionObserve
	}
	return w
}

// wanted returns the image (and build) the rules want, before holds, with no action set;
// false when nothing in particular is wanted (the returned image is then what runs). missing
// names a managed container the wanted build (or pin) has no image for.
func wanted(env *deployv1.Environment) (w Desired, want bool, missing string) {
	st := &env.Status
	spec := &env.Spec
	known := targetKnown(env)
	latest := st.LatestBuild
	if !spec.Accepts(latest) {
		latest = nil
	}
	if spec.Promotion != nil {
		// Only a build that qualified on the upstream is deployed.
		latest = st.PromotedBuild
		if !promotedAccepted(spec, latest) {
			latest = nil
		}
	}
	switch {
	case spec.Pinned():
		w = Desired{Trigger: deployv1.TriggerPin}
		w.Image, w.Images, missing = pinImages(spec)
		w.Build = buildOf(env, w.Image, w.Images)
	case spec.AutoDeploy && latest != nil:
		w = Desired{Build: latest.Ref(), Trigger: deployv1.TriggerBuild}
		w.Image, w.Images, missing = buildImages(&spec.ECS, latest)
		if last := st.LastDeploy(); last != nil && last.Trigger == deployv1.TriggerPin {
			w.Trigger = deployv1.TriggerUnpin
		}
	case !known && st.DeployedImage != "":
		// Moved to another service: what ran on the old one goes along.
		w = Desired{Build: st.DeployedBuild}
		w.Image, w.Images, missing = buildImages(&spec.ECS, &deployv1.Build{Image: st.DeployedImage, Images: st.DeployedImages})
	default:
		w = Desired{Reason: deployv1.ReasonAutoDeployOff, Message: "Auto-deploy is off: new builds are recorded, not deployed"}
		switch {
		case spec.AutoDeploy && spec.Promotion != nil:
			w.Reason, w.Message = deployv1.ReasonWaitingForUpstream, fmt.Sprintf("Waiting for a build of %s to complete its rollout on %s", spec.Application, spec.Promotion.Upstream)
			if g := st.Gate; g != nil && (g.Reason == deployv1.ReasonWaitingForUpstream || g.Reason == deployv1.ReasonNotPromoted || g.Reason == deployv1.ReasonSoaking) {
				w.Reason, w.Message = g.Reason, g.Message
			}
		case spec.AutoDeploy:
			w.Reason, w.Message = deployv1.ReasonWaitingForBuild, "Waiting for the first build of "+spec.Application
			if spec.Branch != "" {
				w.Message += " on branch " + spec.Branch
			}
		case st.DeployedImage == "":
			w.Message = "Auto-deploy is off and nothing is pinned: nothing to deploy"
		}
		w.Image, w.Images, w.Build = st.DeployedImage, st.DeployedImages, st.DeployedBuild
		if w.Build == nil && w.Image != "" {
			w.Build = buildOf(env, w.Image, w.Images)
		}
		return w, false, ""
	}
	if !known {
		w.Trigger = deployv1.TriggerTarget
	}
	return w, true, missing
}

// missingMessage says why w cannot be deployed: it has no image for container missing.
func missingMessage(env *deployv1.Environment, w Desired, missing string) string {
	switch {
	case w.Trigger == deployv1.TriggerPin:
		return fmt.Sprintf("spec.pinnedImages names no image for container %q: pin every container of spec.ecs.containers", missing)
	case w.Build == nil || w.Trigger == deployv1.TriggerTarget && !env.Spec.AutoDeploy:
		return fmt.Sprintf("What ran on the previous target names no image for container %q of spec.ecs.containers; publish a build with an image for every container, or pin them with spec.pinnedImages", missing)
	default:
		return fmt.Sprintf("Build %d names no image for container %q of spec.ecs.containers, so it is not deployed: publish a build with an image for every container (manifest field images.%s, or the CodeBuild variable %s)",
			w.Build.Number, missing, missing, eventbridge.ContainerImageVariable(missing))
	}
}

// needsDeploy reports whether w is not what the service is known to run.
func needsDeploy(env *deployv1.Environment, w Desired) bool {
	st := &env.Status
	switch {
	case w.Image == "":
		return false
	case !targetKnown(env), w.Force, !sameSet(w.Image, w.Images, st.DeployedImage, st.DeployedImages):
		return true
	case w.Trigger == deployv1.TriggerPin:
		return false // a pin names an image
	default:
		// The same image reference from another build (a mutable tag), or from a build when
		// which build runs is not known: deploy the build.
		return w.Build != nil && (st.DeployedBuild == nil || !deployv1.SameBuild(w.Build, st.DeployedBuild))
	}
}

// targetKnown reports whether status.deployedImage describes the service spec.ecs names. A
// status from before the target was recorded is taken to describe it.
func targetKnown(env *deployv1.Environment) bool {
	t := env.Status.Target
	return t == nil || t.Equal(env.Spec.ECS)
}

// olderThan reports whether build b is an older build of the same application than running.
func olderThan(b, running *deployv1.BuildRef) bool {
	return deployv1.Comparable(b, running) && !deployv1.SameBuild(b, running) && b.Number < running.Number
}

// newestFailed returns the newest history entry for w's build (for w's image when w is no
// known build) if its rollout failed.
func newestFailed(st *deployv1.EnvironmentStatus, w Desired) *deployv1.Deploy {
	for i := range st.History {
		d := &st.History[i]
		if w.Build != nil {
			if d.Build == nil || !deployv1.SameBuild(d.Build, w.Build) {
				continue
			}
		} else if !sameSet(d.Image, d.Images, w.Image, w.Images) {
			continue
		}
		if d.Result == deployv1.ResultFailed {
			return d
		}
		return nil
	}
	return nil
}

// samePending reports whether the pending deploy p deploys what w wants.
func samePending(p *deployv1.Deploy, w Desired) bool {
	if !sameSet(p.Image, p.Images, w.Image, w.Images) {
		return false
	}
	return p.Build == nil || w.Build == nil || deployv1.SameBuild(p.Build, w.Build)
}

// retryRequested reports whether the retry annotation has a value not yet answered.
func retryRequested(env *deployv1.Environment) bool {
	v := env.Annotations[deployv1.RetryAnnotation]
	return v != "" && v != env.Status.RetryHandled
}

// stalledAt returns the generation the Stalled condition was set at, or -1.
func stalledAt(env *deployv1.Environment) int64 {
	for _, c := range env.Status.Conditions {
		if c.Type == deployv1.StalledCondition && c.Status == "True" {
			return c.ObservedGeneration
		}
	}
	return -1
}

func stalledReason(env *deployv1.Environment) string {
	for _, c := range env.Status.Conditions {
		if c.Type == deployv1.StalledCondition && c.Status == "True" {
			return c.Reason
		}
	}
	return deployv1.ReasonDeployFailed
}

// buildOf returns the build image (and images, for several containers) came from, when it
// is known.
func buildOf(env *deployv1.Environment, image string, images map[string]string) *deployv1.BuildRef {
	if latest := env.Status.LatestBuild; latest != nil && env.Spec.Accepts(latest) {
		if img, imgs, missing := buildImages(&env.Spec.ECS, latest); missing == "" && sameSet(img, imgs, image, images) {
			return latest.Ref()
		}
	}
	if b := env.Status.DeployedBuild; b != nil && sameSet(env.Status.DeployedImage, env.Status.DeployedImages, image, images) {
		c := *b
		return &c
	}
	return historyBuild(&env.Status, image, images)
}

// historyBuild returns the build of the newest deploy of image (and images) in the history,
// when it is known.
func historyBuild(st *deployv1.EnvironmentStatus, image string, images map[string]string) *deployv1.BuildRef {
	for _, d := range st.History {
		if sameSet(d.Image, d.Images, image, images) && d.Build != nil {
			b := *d.Build
			return &b
		}
	}
	return nil
}

func describe(image string, b *deployv1.BuildRef) string {
	if b == nil {
		return image
	}
	return fmt.Sprintf("build %d (%s)", b.Number, image)
}
