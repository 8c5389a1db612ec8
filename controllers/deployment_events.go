package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/eventbridge"
)

// DeploymentIDIndex is the field index on the ECS deployment id of an Environment's newest
// deploy, used to match ECS events to Environments.
const DeploymentIDIndex = "status.history[0].deploymentID"

// IndexDeploymentID registers DeploymentIDIndex.
func IndexDeploymentID(ctx context.Context, indexer client.FieldIndexer) error {
	return indexer.IndexField(ctx, &deployv1.Environment{}, DeploymentIDIndex, func(o client.Object) []string {
		if last := o.(*deployv1.Environment).Status.LastDeploy(); last != nil && last.DeploymentID != "" {
			return []string{last.DeploymentID}
		}
		return nil
	})
}

// ServiceIndex is the field index on the name of an Environment's ECS service (the last part
// of spec.ecs.service, which may be an ARN), used to find the Environment of an ECS event
// whose deployment id the cache does not know (yet).
const ServiceIndex = "spec.ecs.service.name"

// IndexService registers ServiceIndex.
func IndexService(ctx context.Context, indexer client.FieldIndexer) error {
	return indexer.IndexField(ctx, &deployv1.Environment{}, ServiceIndex, func(o client.Object) []string {
		return []string{serviceName(o.(*deployv1.Environment).Spec.ECS.Service)}
	})
}

func serviceName(s string) string { return s[strings.LastIndex(s, "/")+1:] }

// eventSkew is how much earlier than the deploy's recorded start an ECS event about the same
// service may be stamped and still be taken for that deploy's (clocks differ).
const eventSkew = time.Minute

// ECSDeploymentStateChange is the kind of EventBridge event ECS sends as a deployment moves.
var ECSDeploymentStateChange = eventbridge.EventKind{Source: "aws.ecs", DetailType: "ECS Deployment State Change"}

// DeploymentEvents ends rollouts from ECS "Deployment State Change" events: the zero-polling
// way to learn that a deployment COMPLETED or FAILED. Events are matched by deployment id and
// service ARN, so an event about another service changes nothing.
//
// An event can arrive before its deployment id is known: the informer cache may lag behind
// the status write that recorded it, or that write may still be in flight (UpdateService
// answered, the API server did not yet). Such an event is looked up again on the live
// Environment of its service, and if the deploy there is still being recorded the receiver
// answers 503 so that EventBridge delivers it again: an ending is never dropped for being
// early.
type DeploymentEvents struct {
	// Cache lists Environments by DeploymentIDIndex and ServiceIndex.
	Cache client.Reader
	// Live reads an Environment from the API server.
	Live     client.Reader
	Rollouts RolloutSink
}

// Route returns the receiver route for these events.
func (d *DeploymentEvents) Route() eventbridge.EventRoute {
	return eventbridge.EventRoute{Kind: ECSDeploymentStateChange, Label: "ecs", Handler: d}
}

type deploymentDetail struct {
	EventType    string `json:"eventType"`
	EventName    string `json:"eventName"`
	DeploymentID string `json:"deploymentId"`
	Reason       string `json:"reason"`
}

// Handle implements eventbridge.EventHandler.
func (d *DeploymentEvents) Handle(ctx context.Context, ev *eventbridge.Event, scope eventbridge.Scope) (int, eventbridge.Response) {
	resp := eventbridge.Response{Updated: []string{}}
	var detail deploymentDetail
	if err := json.Unmarshal(ev.Detail, &detail); err != nil || detail.DeploymentID == "" || len(ev.Resources) == 0 {
		resp.Error = "invalid event: detail.deploymentId and resources (the service ARN) are required"
		return http.StatusBadRequest, resp
	}
	obs := RolloutObservation{DeploymentID: detail.DeploymentID, Reason: detail.Reason, At: ev.Time}
	switch detail.EventName {
	case "SERVICE_DEPLOYMENT_COMPLETED":
		obs.Result = deployv1.ResultCompleted
	case "SERVICE_DEPLOYMENT_FAILED":
		obs.Result = deployv1.ResultFailed
	default:
		resp.Result, resp.Message = eventbridge.ResultIgnored, "event "+detail.EventName+" does not end a rollout"
		return http.StatusOK, resp
	}
	list, err := d.list(ctx, DeploymentIDIndex, detail.DeploymentID, scope)
	if err != nil {
		resp.Error = "listing Environments failed; retry"
		return http.StatusServiceUnavailable, resp
	}
	for i := range list.Items {
		env := &list.Items[i]
		if !serviceMatches(ev.Resources[0], env.Spec.ECS) {
			continue
		}
		if !d.record(ctx, env, obs, &resp) {
			return http.StatusServiceUnavailable, resp
		}
	}
	if len(resp.Updated) == 0 && len(resp.Duplicate) == 0 {
		if code, ok := d.early(ctx, ev, obs, scope, &resp); !ok {
			return code, resp
		}
	}
	sumUp(&resp, "no Environment is rolling out this deployment")
	return http.StatusOK, resp
}

// early handles an event whose deployment id no cached Environment carries: it reads the
// live Environments of the event's service and records the ending on the one whose newest
// deploy has that id (the cache lagged), or asks for a redelivery (ok false, 503) while one of
// them is still recording a deploy that may be this one.
func (d *DeploymentEvents) early(ctx context.Context, ev *eventbridge.Event, obs RolloutObservation, scope eventbridge.Scope, resp *eventbridge.Response) (int, bool) {
	arn := ev.Resources[0]
	list, err := d.list(ctx, ServiceIndex, serviceName(arn), scope)
	if err != nil {
		resp.Error = "listing Environments failed; retry"
		return http.StatusServiceUnavailable, false
	}
	for i := range list.Items {
		if !serviceMatches(arn, list.Items[i].Spec.ECS) {
			continue
		}
		key := client.ObjectKeyFromObject(&list.Items[i])
		env := &deployv1.Environment{}
		if err := d.Live.Get(ctx, key, env); err != nil {
			if client.IgnoreNotFound(err) == nil {
				continue
			}
			resp.Error = fmt.Sprintf("reading %s failed; retry", key)
			return http.StatusServiceUnavailable, false
		}
		if last := env.Status.LastDeploy(); last != nil && last.DeploymentID == obs.DeploymentID {
			if !d.record(ctx, env, obs, resp) {
				return http.StatusServiceUnavailable, false
			}
			continue
		}
		if p := env.Status.PendingDeploy; p != nil && inFlight(env, p, obs) {
			resp.Error = fmt.Sprintf("the deploy of %s to this service is still being recorded; retry", key)
			return http.StatusServiceUnavailable, false
		}
	}
	return 0, true
}

// list lists the cached Environments in scope whose field index has value.
func (d *DeploymentEvents) list(ctx context.Context, index, value string, scope eventbridge.Scope) (*deployv1.EnvironmentList, error) {
	return listInScope(ctx, d.Cache, index, value, scope)
}

// record records obs on env (as read from the cache or the API server) and notes it in resp
// as updated or duplicate; false (with resp.Error set) when the write failed and the event
// must be retried.
//
// A FAILED event is recorded as reported, not as the end of the rollout: the event cannot
// tell whether ECS rolled the service back (see confirmFailure), and the receiver never calls
// ECS. The reconciler looks at the service once and ends the rollout.
func (d *DeploymentEvents) record(ctx context.Context, env *deployv1.Environment, obs RolloutObservation, resp *eventbridge.Response) bool {
	key := client.ObjectKeyFromObject(env)
	obs.Unconfirmed = obs.Result == deployv1.ResultFailed
	changed, err := d.Rollouts.Record(ctx, key, obs)
	if err != nil {
		resp.Error = fmt.Sprintf("recording the rollout of %s failed; retry", key)
		return false
	}
	if changed {
		resp.Updated = append(resp.Updated, key.String())
	} else {
		resp.Duplicate = append(resp.Duplicate, key.String())
	}
	return true
}

// inFlight reports whether the pending deploy p of env may be the one whose deployment obs
// reports, still being recorded: it has not stalled (a stalled deploy never reached the
// service), env is not held off its service by an older Environment, it has no deployment id
// yet or obs's, and obs is not older than the deploy. An event about anything else is not
// redelivered: EventBridge would retry it for a day.
func inFlight(env *deployv1.Environment, p *deployv1.Deploy, obs RolloutObservation) bool {
	if ready := meta.FindStatusCondition(env.Status.Conditions, deployv1.ReadyCondition); ready != nil && ready.Reason == deployv1.ReasonServiceConflict {
		return false
	}
	return p.Result != deployv1.ResultStalled &&
		(p.DeploymentID == "" || p.DeploymentID == obs.DeploymentID) &&
		(obs.At.IsZero() || !obs.At.Before(p.StartedAt.Add(-eventSkew)))
}
