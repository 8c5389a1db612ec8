package controllers

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	ktypes "k8s.io/apimachinery/pkg/types"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
)

// awaitedHookID returns the id of the pause hook d's rollout waits at, or "".
func awaitedHookID(d *deployv1.Deploy) string {
	if d.AwaitingHook == nil {
		return ""
	}
	return d.AwaitingHook.HookID
}

// awaitedPauseHook returns the first pause hook of sd that waits for an answer, or nil.
func awaitedPauseHook(sd *types.ServiceDeployment) *types.DeploymentLifecycleHookDetail {
	for i := range sd.LifecycleHookDetails {
		h := &sd.LifecycleHookDetails[i]
		if h.Status == types.DeploymentLifecycleHookStatusAwaitingAction &&
			(h.TargetType == "" || h.TargetType == types.DeploymentLifecycleHookTargetTypePause) {
			return h
		}
	}
	return nil
}

// pauseHooks records, once, that the service deployment sd followed for key waits at a
// pause hook (lifecycleHookDetails[].status AWAITING_ACTION), or that it no longer waits at
// the one the status names: the polling path to AwaitingApproval, without events.
func (t *ServiceDeploymentTracker) pauseHooks(ctx context.Context, key ktypes.NamespacedName, it sdItem, sd *types.ServiceDeployment) {
	if t.Hooks == nil {
		return
	}
	obs := HookObservation{ServiceDeploymentARN: it.arn, Stage: string(sd.LifecycleStage), At: t.Now()}
	h := awaitedPauseHook(sd)
	switch {
	case h != nil && aws.ToString(h.HookId) == it.hook:
		return
	case h != nil:
		obs.HookID, obs.Status, obs.ExpiresAt, obs.TimeoutAction = aws.ToString(h.HookId), HookAwaitingAction, h.ExpiresAt, string(h.TimeoutAction)
	case it.hook == "":
		return
	default:
		// The hook the status names is no longer listed as awaiting: ECS moved on.
		obs.HookID, obs.Status = it.hook, "DONE"
	}
	if _, err := t.Hooks.RecordHook(ctx, key, obs); err != nil {
		t.Log.Error(err, "Recording the pause hook of a service deployment failed; trying again later", "environment", key)
		return
	}
	next := ""
	if obs.Status == HookAwaitingAction {
		next = obs.HookID
	}
	t.schedule().update(key, func(cur *sdItem) {
		if cur.arn == it.arn {
			cur.hook = next
		}
	})
}
