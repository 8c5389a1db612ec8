package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// HookActionAnnotation answers the pause hook a deploy awaits. Its value is
// "continue:<hookID>" or "rollback:<hookID>": the hook id binds the answer to one hook of one
// ECS service deployment (ECS makes a new id for every hook it awaits), so an old value never
// answers a later hook. Every new value is answered once and recorded in
// status.hookActionHandled.
const HookActionAnnotation = "deploy.autodeploy.dev/hook-action"

// Actions of HookActionAnnotation (before the colon) and of AwaitingHook.Action.
const (
	HookActionContinue = "continue"
	HookActionRollback = "rollback"
)

// ReasonAwaitingApproval: the ECS deployment of the newest deploy waits at a pause hook for
// the user to continue or roll it back (Ready=False, Reconciling=True).
const ReasonAwaitingApproval = "AwaitingApproval"

// MaxFinishedHooks bounds Deploy.FinishedHooks.
const MaxFinishedHooks = 20

// AwaitingHook is a pause hook (a lifecycle hook with targetType PAUSE) at which an ECS
// service deployment waits for ContinueServiceDeployment.
type AwaitingHook struct {
	// ServiceDeploymentARN is the ECS service deployment that waits.
	ServiceDeploymentARN string `json:"serviceDeploymentARN"`
	// HookID is the id ECS gave this wait of the hook.
	HookID string `json:"hookID"`
	// Stage is the lifecycle stage the deployment waits at, for example POST_TEST_TRAFFIC_SHIFT.
	// +optional
	Stage string `json:"stage,omitempty"`
	// ExpiresAt is when ECS stops waiting and takes TimeoutAction.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`
	// TimeoutAction is what ECS does at ExpiresAt: CONTINUE or ROLLBACK.
	// +optional
	TimeoutAction string `json:"timeoutAction,omitempty"`
	// Since is when ECS was seen waiting at the hook.
	Since metav1.Time `json:"since"`
	// Action is the answer being given (continue or rollback), from the hook-action
	// annotation; empty while nobody answered.
	// +optional
	Action string `json:"action,omitempty"`
	// ActionSentAt is when ECS accepted the answer (ContinueServiceDeployment); empty while it
	// is still being sent.
	// +optional
	ActionSentAt *metav1.Time `json:"actionSentAt,omitempty"`
}

// AwaitedHook returns the pause hook the rollout of the newest deploy waits at, or nil.
func (s *EnvironmentStatus) AwaitedHook() *AwaitingHook {
	last := s.LastDeploy()
	if last == nil || last.Result != ResultInProgress {
		return nil
	}
	return last.AwaitingHook
}

// HookActionValue is the value of HookActionAnnotation that answers hookID with action.
func HookActionValue(action, hookID string) string { return action + ":" + hookID }
