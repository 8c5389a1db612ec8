package controllers

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
)

// maxServiceDeploymentsPerDescribe is ECS's limit of ARNs in one DescribeServiceDeployments
// (and DescribeServiceRevisions) call.
const maxServiceDeploymentsPerDescribe = 20

// strategyOf returns the deployment strategy of a service with the ECS deployment controller.
func strategyOf(svc *types.Service) string {
	if c := svc.DeploymentConfiguration; c != nil && c.Strategy != "" {
		return string(c.Strategy)
	}
	return deployv1.StrategyRolling
}

// followsServiceDeployment reports whether deploys with this strategy are followed through
// ECS's service deployments (ECS sends no completion events for them).
func followsServiceDeployment(strategy string) bool {
	switch strategy {
	case deployv1.StrategyBlueGreen, deployv1.StrategyLinear, deployv1.StrategyCanary:
		return true
	}
	return false
}

// classicLoadBalanced reports whether the service is behind a Classic Load Balancer (a load
// balancer named without a target group): ECS reports no rolloutState for it.
func classicLoadBalanced(svc *types.Service) bool {
	for _, lb := range svc.LoadBalancers {
		if aws.ToString(lb.LoadBalancerName) != "" && aws.ToString(lb.TargetGroupArn) == "" {
			return true
		}
	}
	return false
}

// checkDeploymentController refuses, before anything is registered, a deploy to a service
// whose deployments ECS does not run itself: UpdateService cannot give a CODE_DEPLOY or an
// EXTERNAL service a new task definition.
func checkDeploymentController(svc *types.Service, target deployv1.ECSTarget) error {
	if svc.DeploymentController == nil {
		return nil
	}
	where := fmt.Sprintf("ECS service %q in cluster %q", target.Service, target.Cluster)
	var msg string
	switch svc.DeploymentController.Type {
	case types.DeploymentControllerTypeCodeDeploy:
		msg = where + " uses the CODE_DEPLOY deployment controller, which does not take a new task definition through UpdateService: " +
			"trigger the deployment through AWS CodeDeploy, or switch the service to the ECS deployment controller " +
			"with its built-in blue/green strategy (deploymentConfiguration.strategy BLUE_GREEN), then change the spec or set the " +
			deployv1.RetryAnnotation + " annotation"
	case types.DeploymentControllerTypeExternal:
		msg = where + " uses the EXTERNAL deployment controller, whose deployments go through task sets " +
			"(CreateTaskSet, UpdateServicePrimaryTaskSet), not UpdateService: deploy it with the tool that manages its task sets, " +
			"or switch the service to the ECS deployment controller, then change the spec or set the " + deployv1.RetryAnnotation + " annotation"
	default:
		return nil
	}
	return &deployError{reason: deployv1.ReasonUnsupportedDeploymentController, message: msg}
}

// deployAndFollow makes the deploy and, for a service whose strategy is followed through
// service deployments, finds the service deployment it started (or, resumed, had started):
// one ListServiceDeployments, only for these strategies.
func deployAndFollow(ctx context.Context, api ECSAPI, req deployRequest) (*deployResult, error) {
	res, err := deploy(ctx, api, req)
	if err != nil || !followsServiceDeployment(res.strategy) || req.pending == nil {
		return res, err
	}
	switch res.outcome {
	case outcomeUpdated, outcomeFound:
	case outcomeRunning:
		if res.rolloutState != string(types.DeploymentRolloutStateInProgress) {
			return res, nil
		}
	default:
		return res, nil
	}
	arn, err := findServiceDeployment(ctx, api, req)
	if err != nil {
		return nil, err
	}
	res.serviceDeploymentARN = arn
	return res, nil
}

// findServiceDeployment returns the newest service deployment of the target created since the
// pending deploy started (less the clock skew) that no earlier deploy in the history recorded.
func findServiceDeployment(ctx context.Context, api ECSAPI, req deployRequest) (string, error) {
	since := req.pending.StartedAt.Add(-startSkew)
	in := &ecs.ListServiceDeploymentsInput{
		Cluster:   aws.String(req.target.Cluster),
		Service:   aws.String(req.target.Service),
		CreatedAt: &types.CreatedAt{After: aws.Time(since)},
	}
	var best *types.ServiceDeploymentBrief
	for {
		out, err := api.ListServiceDeployments(ctx, in)
		if err != nil {
			return "", err
		}
		if b := newestBrief(out.ServiceDeployments, func(b *types.ServiceDeploymentBrief) bool {
			arn := aws.ToString(b.ServiceDeploymentArn)
			return arn != "" && !req.knownARNs[arn] && (b.CreatedAt == nil || !b.CreatedAt.Before(since))
		}); b != nil && (best == nil || newerBrief(b, best)) {
			best = b
		}
		if aws.ToString(out.NextToken) == "" {
			break
		}
		in.NextToken = out.NextToken
	}
	if best == nil {
		return "", nil
	}
	return aws.ToString(best.ServiceDeploymentArn), nil
}

// newestBrief returns the newest of the service deployments that keep accepts, or nil.
func newestBrief(list []types.ServiceDeploymentBrief, keep func(*types.ServiceDeploymentBrief) bool) *types.ServiceDeploymentBrief {
	var newest *types.ServiceDeploymentBrief
	for i := range list {
		if b := &list[i]; keep(b) && (newest == nil || newerBrief(b, newest)) {
			newest = b
		}
	}
	return newest
}

// newerBrief reports whether a was created after b (an unknown time is not newer).
func newerBrief(a, b *types.ServiceDeploymentBrief) bool {
	return a.CreatedAt != nil && b.CreatedAt != nil && a.CreatedAt.After(*b.CreatedAt)
}

// knownServiceDeployments returns the service-deployment ARNs in the history.
func knownServiceDeployments(st *deployv1.EnvironmentStatus) map[string]bool {
	known := map[string]bool{}
	for _, d := range st.History {
		if d.ServiceDeploymentARN != "" {
			known[d.ServiceDeploymentARN] = true
		}
	}
	return known
}

// annotate records on d what the deploy learnt of how the service deploys.
func (res *deployResult) annotate(d *deployv1.Deploy) {
	if res.strategy != deployv1.StrategyRolling {
		d.Strategy = res.strategy
	}
	d.ServiceDeploymentARN = res.serviceDeploymentARN
	d.SteadyState = res.steadyState && res.rolloutState == ""
}

// formatWeight writes a traffic weight (percent) without a float: 5 as "5", 0.1 as "0.1".
func formatWeight(w *float64) string {
	if w == nil {
		return ""
	}
	return strconv.FormatFloat(*w, 'f', -1, 64)
}

// strategyName is how status.rollout names a strategy.
func strategyName(strategy string) string {
	switch strategy {
	case deployv1.StrategyBlueGreen:
		return "BlueGreen"
	case deployv1.StrategyLinear:
		return "Linear"
	case deployv1.StrategyCanary:
		return "Canary"
	}
	return "Rolling"
}

// RolloutSummary is status.rollout for the newest deploy d: its result once it ended; while
// it runs, Rolling, or the strategy with the production traffic weight ("Canary 5%"), or
// BakeTime.
func RolloutSummary(d *deployv1.Deploy) string {
	if d == nil {
		return ""
	}
	if d.Result != deployv1.ResultInProgress {
		return d.Result
	}
	if !followsServiceDeployment(d.Strategy) {
		return "Rolling"
	}
	if d.Stage == string(types.ServiceDeploymentLifecycleStageBakeTime) {
		return "BakeTime"
	}
	if d.TrafficWeight != "" {
		return strategyName(d.Strategy) + " " + d.TrafficWeight + "%"
	}
	return strategyName(d.Strategy)
}

// rolloutInProgressMessage is the Ready message while d rolls out.
func rolloutInProgressMessage(d *deployv1.Deploy) string {
	msg := fmt.Sprintf("ECS deployment %s of %s is rolling out", d.DeploymentID, describe(d.Image, d.Build))
	if !followsServiceDeployment(d.Strategy) {
		return msg
	}
	var parts []string
	parts = append(parts, strings.ToLower(strategyName(d.Strategy))+" deployment")
	if d.Stage != "" {
		parts = append(parts, "stage "+d.Stage)
	}
	if d.TrafficWeight != "" {
		parts = append(parts, d.TrafficWeight+"% of production traffic on the new revision")
	}
	return msg + " (" + strings.Join(parts, ", ") + ")"
}

// digestMismatch returns a message when the image of d names a digest and the container runs
// another one, else "".
func digestMismatch(d *deployv1.Deploy) string {
	if d == nil || d.ImageDigest == "" {
		return ""
	}
	_, want, ok := strings.Cut(d.Image, "@")
	if !ok || want == d.ImageDigest {
		return ""
	}
	return fmt.Sprintf("the image %s names digest %s but ECS runs digest %s", d.Image, want, d.ImageDigest)
}
