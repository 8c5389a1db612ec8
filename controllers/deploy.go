package controllers

import (
	"context"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/taskdef"
)

// deployRequest is one deploy (or one look at the service) to make.
type deployRequest struct {
	target deployv1.ECSTarget
	// application is spec.application, written in the provenance of revisions of builds
	// recorded before builds carried their application.
	application string
	image       string
	// images is the image of every managed container when the target manages several (nil
	// otherwise): one revision sets them all.
	images map[string]string
	build  *deployv1.BuildRef
	// force starts a new ECS deployment even if the service runs image (a retry).
	force bool
	// pin: a pin may deploy a build older than the one that runs.
	pin bool
	// pending is the deploy's record. With resume it was recorded by an earlier pass that may
	// have reached the service, so ECS is asked what became of it before anything changes.
	pending *deployv1.Deploy
	resume  bool
	// observe only looks: what runs, and whether the pending deploy reached the service.
	observe bool
	// known holds the ECS deployment ids in the history: none of them is this deploy's.
	known map[string]bool
	// knownARNs holds the service-deployment ARNs in the history.
	knownARNs map[string]bool
}

// deployOutcome says what a deploy found or did.
type deployOutcome int

const (
	// outcomeUpdated: UpdateService started a deployment of the image.
	outcomeUpdated deployOutcome = iota
	// outcomeFound: the resumed deploy had already started a deployment; nothing was changed.
	outcomeFound
	// outcomeRunning: the service already ran the image; nothing was changed.
	outcomeRunning
	// outcomeNewer: the service runs a newer build of the application; nothing was changed.
	outcomeNewer
	// outcomeObserved: only looked (request.observe) and the pending deploy never reached the
	// service; nothing was changed.
	outcomeObserved
)

// deployResult is what a deploy did to the service and what the service runs after it.
type deployResult struct {
	outcome deployOutcome
	// running and runningBuild are what the container runs now, as ECS reports it (the build
	// from the revision's provenance tags, when it has them).
	running       string
	runningImages map[string]string
	runningBuild  *deployv1.BuildRef
	// previousImage and previousBuild are what the container ran before this deploy.
	previousImage  string
	previousImages map[string]string
	previousBuild  *deployv1.BuildRef
	// taskDefinitionARN and deploymentID are the revision and ECS deployment of the deploy.
	taskDefinitionARN string
	deploymentID      string
	// previousTaskDefinitionARN is the revision the service ran when this deploy updated it.
	previousTaskDefinitionARN string
	// rolloutState and rolloutReason are ECS's view of the deployment; rolledBack is true when
	// it failed and ECS put another task definition back.
	rolloutState, rolloutReason string
	rolledBack                  bool
	registered, updated         bool
	// strategy is the service's deployment strategy (ROLLING when it names none);
	// serviceDeploymentARN the service deployment a BLUE_GREEN, LINEAR or CANARY deploy
	// started; steadyState is true when ECS reports no rolloutState for the service.
	strategy, serviceDeploymentARN string
	steadyState                    bool
}

// startSkew is how much earlier than a pending deploy's recorded start an ECS deployment may
// be stamped and still be taken for that deploy's (the clocks of the controller and of ECS
// differ).
const startSkew = time.Minute

// deploy makes the service run req.image. It reads what the service runs first (one
// DescribeServices, one DescribeTaskDefinition) and changes nothing when it runs the image
// of the build already, or a newer build of the application (unless a pin asks). A resumed
// deploy first looks for the ECS deployment it may have started before it was interrupted,
// and records that deployment instead of starting another; only then does it also look at
// the family's newest revision, which the interrupted attempt may have registered.
func deploy(ctx context.Context, api ECSAPI, req deployRequest) (*deployResult, error) {
	svcOut, err := api.DescribeServices(ctx, &ecs.DescribeServicesInput{
		Cluster:  aws.String(req.target.Cluster),
		Services: []string{req.target.Service},
	})
	if err != nil {
		return nil, err
	}
	if len(svcOut.Services) == 0 {
		return nil, &types.ServiceNotFoundException{Message: aws.String("service not found")}
	}
	svc := &svcOut.Services[0]
	if status := aws.ToString(svc.Status); status != "ACTIVE" {
		return nil, &types.ServiceNotActiveException{Message: aws.String("service status " + status)}
	}
	current, err := describeTaskDefinition(ctx, api, svc.TaskDefinition)
	if err != nil {
		return nil, err
	}
	running, runningImages, err := readImages(current.TaskDefinition, &req.target)
	if err != nil {
		return nil, err
	}
	res := &deployResult{running: running, runningImages: runningImages, runningBuild: buildFromTags(current.Tags), previousImage: running, previousImages: runningImages}
	res.previousBuild = res.runningBuild
	res.strategy, res.steadyState = strategyOf(svc), classicLoadBalanced(svc)

	if req.resume || req.observe {
		d, found, err := findStarted(ctx, api, svc, running, runningImages, current.Tags, req)
		if err != nil {
			return nil, err
		}
		if found {
			res.outcome = outcomeFound
			res.setFrom(d)
			res.taskDefinitionARN = aws.ToString(d.TaskDefinition)
			primary := primaryOf(svc.Deployments)
			res.rolledBack = d.RolloutState == types.DeploymentRolloutStateFailed && primary != nil &&
				aws.ToString(primary.Id) != aws.ToString(d.Id) && aws.ToString(primary.TaskDefinition) != aws.ToString(d.TaskDefinition)
			// What ran before is what the status said ran when the deploy was recorded; when
			// that was not known and ECS rolled back, it is what ECS put back.
			res.previousImage, res.previousImages, res.previousBuild = req.pending.PreviousImage, req.pending.PreviousImages, req.pending.PreviousBuild
			switch {
			case res.previousImage != "":
			case res.rolledBack:
				res.previousImage, res.previousImages, res.previousBuild = running, runningImages, res.runningBuild
			case d.RolloutState == types.DeploymentRolloutStateInProgress:
				if err := res.replacedBy(ctx, api, svc, d, req); err != nil {
					return nil, err
				}
			}
			return res, nil
		}
		if req.observe {
			res.outcome = outcomeObserved
			return res, nil
		}
	}

	if !req.pin && olderThan(req.build, res.runningBuild) {
		res.outcome = outcomeNewer
		return res, nil
	}
	satisfied := sameSet(running, runningImages, req.image, req.images) &&
		(req.pin || req.build == nil || (res.runningBuild != nil && deployv1.SameBuild(req.build, res.runningBuild)))
	if satisfied && !req.force {
		res.outcome = outcomeRunning
		res.taskDefinitionARN = aws.ToString(svc.TaskDefinition)
		p := primaryOf(svc.Deployments)
		if p != nil {
			res.setFrom(p)
		}
		if p != nil && p.RolloutState == types.DeploymentRolloutStateInProgress {
			// The image is still rolling out, and ECS may roll it back: what it replaced is
			// what the deploy replaced.
			if err := res.replacedBy(ctx, api, svc, p, req); err != nil {
				return nil, err
			}
		} else if req.resume {
			res.previousImage, res.previousImages, res.previousBuild = req.pending.PreviousImage, req.pending.PreviousImages, req.pending.PreviousBuild
		}
		return res, nil
	}
	if err := checkDeploymentController(svc, req.target); err != nil {
		return nil, err
	}
	if satisfied {
		// A retry of what runs: a new ECS deployment of the same revision.
		res.taskDefinitionARN = aws.ToString(svc.TaskDefinition)
		return update(ctx, api, req.target, res, true)
	}

	want, err := taskdef.RegisterInputImages(current.TaskDefinition, current.Tags, imagesToSet(req))
	if err != nil {
		return nil, err
	}
	want.Tags = taskdef.WithProvenance(want.Tags, provenance(req))
	if len(want.Tags) == 0 {
		want.Tags = nil
	}
	arn, registered, err := register(ctx, api, current.TaskDefinition, want, req)
	if err != nil {
		return nil, err
	}
	res.taskDefinitionARN, res.registered = arn, registered
	res.previousTaskDefinitionARN = aws.ToString(svc.TaskDefinition)
	return update(ctx, api, req.target, res, false)
}

// findStarted looks among the service's deployments for one the pending deploy started: not
// in the history, created no earlier than the deploy was recorded, and of a revision with the
// deploy's image (and build, when the revision says).
func findStarted(ctx context.Context, api ECSAPI, svc *types.Service, running string, runningImages map[string]string, runningTags []types.Tag, req deployRequest) (*types.Deployment, bool, error) {
	if req.pending == nil {
		return nil, false, nil
	}
	since := req.pending.StartedAt.Add(-startSkew)
	var best *types.Deployment
	for i := range svc.Deployments {
		d := &svc.Deployments[i]
		if req.known[aws.ToString(d.Id)] || (d.CreatedAt != nil && d.CreatedAt.Before(since)) {
			continue
		}
		img, imgs, tags := running, runningImages, runningTags
		if td := aws.ToString(d.TaskDefinition); td != aws.ToString(svc.TaskDefinition) {
			out, err := describeTaskDefinition(ctx, api, d.TaskDefinition)
			if err != nil {
				return nil, false, err
			}
			if img, imgs, err = readImages(out.TaskDefinition, &req.target); err != nil {
				continue
			}
			tags = out.Tags
		}
		if !sameSet(img, imgs, req.pending.Image, req.pending.Images) {
			continue
		}
		if b := buildFromTags(tags); b != nil && req.pending.Build != nil && !deployv1.SameBuild(b, req.pending.Build) {
			continue
		}
		if best == nil || (d.CreatedAt != nil && best.CreatedAt != nil && d.CreatedAt.After(*best.CreatedAt)) {
			best = d
		}
	}
	return best, best != nil, nil
}

// register returns the ARN of a revision equal to want. A resumed deploy reuses the family's
// newest revision when an interrupted attempt already registered it, and a retry the revision
// of the rollout that failed (ECS rolled back from it); a fresh deploy registers.
func register(ctx context.Context, api ECSAPI, current *types.TaskDefinition, want *ecs.RegisterTaskDefinitionInput, req deployRequest) (string, bool, error) {
	// A resumed deploy may have registered the revision before it was interrupted; a retry, or
	// a deploy to a service the Environment moved back to, may find the revision an earlier
	// deploy of the same image registered there. They reuse it rather than register its twin:
	// one more DescribeTaskDefinition, for these deploys only (a fresh deploy makes four calls).
	if req.resume || req.force || req.pending != nil && req.pending.Trigger == deployv1.TriggerTarget {
		newest, err := describeTaskDefinition(ctx, api, current.Family)
		if err != nil {
			return "", false, err
		}
		if newest.TaskDefinition.Revision != current.Revision {
			if got, gotImages, err := readImages(newest.TaskDefinition, &req.target); err == nil && sameSet(got, gotImages, req.image, req.images) {
				existing, err := taskdef.RegisterInputImages(newest.TaskDefinition, newest.Tags, imagesToSet(req))
				if err == nil && taskdef.Equivalent(existing, want) {
					return aws.ToString(newest.TaskDefinition.TaskDefinitionArn), false, nil
				}
			}
		}
	}
	// The SDK must not repeat the call: an answer lost after ECS registered the revision
	// would register a second one. The reconciler retries it, through the reuse check above.
	out, err := api.RegisterTaskDefinition(ctx, want, noSDKRetry)
	if err != nil {
		return "", false, registerFailed(err, req.image)
	}
	return aws.ToString(out.TaskDefinition.TaskDefinitionArn), true, nil
}

// update points the service at res.taskDefinitionARN and records the new deployment.
func update(ctx context.Context, api ECSAPI, target deployv1.ECSTarget, res *deployResult, force bool) (*deployResult, error) {
	upd, err := api.UpdateService(ctx, &ecs.UpdateServiceInput{
		Cluster:            aws.String(target.Cluster),
		Service:            aws.String(target.Service),
		TaskDefinition:     aws.String(res.taskDefinitionARN),
		ForceNewDeployment: force,
	})
	if err != nil {
		return nil, err
	}
	res.outcome, res.updated = outcomeUpdated, true
	if upd.Service != nil {
		if p := primaryOf(upd.Service.Deployments); p != nil {
			res.setFrom(p)
		}
	}
	return res, nil
}

// replacedBy sets the previous image of a deploy that found the image rolling out in
// deployment p (started by an earlier deploy, of this Environment on another target or of
// an Environment deleted since, or by someone else): what the deploy's record says ran
// before, else the image of the deployment p replaces, else unknown.
func (res *deployResult) replacedBy(ctx context.Context, api ECSAPI, svc *types.Service, p *types.Deployment, req deployRequest) error {
	res.previousImage, res.previousImages, res.previousBuild = "", nil, nil
	if req.pending != nil && req.pending.PreviousImage != "" && !sameSet(req.pending.PreviousImage, req.pending.PreviousImages, res.running, res.runningImages) {
		res.previousImage, res.previousImages, res.previousBuild = req.pending.PreviousImage, req.pending.PreviousImages, req.pending.PreviousBuild
		return nil
	}
	for i := range svc.Deployments {
		d := &svc.Deployments[i]
		if aws.ToString(d.Id) == aws.ToString(p.Id) || aws.ToString(d.TaskDefinition) == aws.ToString(p.TaskDefinition) ||
			d.RolloutState == types.DeploymentRolloutStateFailed {
			continue
		}
		out, err := describeTaskDefinition(ctx, api, d.TaskDefinition)
		if err != nil {
			return err
		}
		if img, imgs, err := readImages(out.TaskDefinition, &req.target); err == nil {
			res.previousImage, res.previousImages, res.previousBuild = img, imgs, buildFromTags(out.Tags)
		}
		return nil
	}
	return nil
}

// describeTaskDefinition reads a revision (family, family:revision or ARN) with its tags.
func describeTaskDefinition(ctx context.Context, api ECSAPI, ref *string) (*ecs.DescribeTaskDefinitionOutput, error) {
	return api.DescribeTaskDefinition(ctx, &ecs.DescribeTaskDefinitionInput{
		TaskDefinition: ref,
		Include:        []types.TaskDefinitionField{types.TaskDefinitionFieldTags},
	})
}

func primaryOf(ds []types.Deployment) *types.Deployment {
	for i := range ds {
		if aws.ToString(ds[i].Status) == "PRIMARY" {
			return &ds[i]
		}
	}
	return nil
}

// setFrom records deployment d's id and rollout state.
func (res *deployResult) setFrom(d *types.Deployment) {
	res.deploymentID = aws.ToString(d.Id)
	res.rolloutState = string(d.RolloutState)
	res.rolloutReason = aws.ToString(d.RolloutStateReason)
}

// provenance is the build a revision registered for req carries; nil for an image that is
// no known build (the copied provenance of the revision it derives from is then removed).
func provenance(req deployRequest) *taskdef.Provenance {
	if req.build == nil {
		return nil
	}
	app := req.build.Application
	if app == "" {
		app = req.application
	}
	return &taskdef.Provenance{Application: app, Source: req.build.Source, BuildID: req.build.ID, BuildNumber: req.build.Number}
}

// buildFromTags returns the build a revision's provenance tags name, or nil.
func buildFromTags(tags []types.Tag) *deployv1.BuildRef {
	p, ok := taskdef.ProvenanceOf(tags)
	if !ok {
		return nil
	}
	return &deployv1.BuildRef{Application: p.Application, Source: p.Source, ID: p.BuildID, Number: p.BuildNumber}
}

// knownDeployments returns the ECS deployment ids in the history.
func knownDeployments(st *deployv1.EnvironmentStatus) map[string]bool {
	known := make(map[string]bool, len(st.History))
	for _, d := range st.History {
		if d.DeploymentID != "" {
			known[d.DeploymentID] = true
		}
	}
	return known
}
