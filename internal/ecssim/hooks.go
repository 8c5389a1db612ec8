package ecssim

import (
	"encoding/json"
	"slices"
	"time"
)

// Lifecycle hook target types, statuses and actions.
const (
	HookTargetPause  = "PAUSE"
	HookTargetLambda = "AWS_LAMBDA"

	HookAwaitingAction = "AWAITING_ACTION"
	HookSucceeded      = "SUCCEEDED"
	HookFailed         = "FAILED"
	HookTimedOut       = "TIMED_OUT"

	HookActionContinue = "CONTINUE"
	HookActionRollback = "ROLLBACK"
)

// ECS "Hook State Change" EventBridge events.
const (
	HookEventDetailType     = "ECS Hook State Change"
	EventHookAwaitingAction = "HOOK_AWAITING_ACTION"
)

var hookStages = []string{
	StageReconcileService, StagePreScaleUp, StagePostScaleUp, StageTestTrafficShift, StagePostTestTrafficShift,
	StagePreProductionTrafficShift, StageProductionTrafficShift, StagePostProductionTrafficShift,
}

// hookSpec is one entry of deploymentConfiguration.lifecycleHooks.
type hookSpec struct {
	targetType    string
	targetArn     string
	stages        []string
	timeout       float64 // minutes
	timeoutAction string
}

// parseHooks reads and checks deploymentConfiguration.lifecycleHooks, with
// the field names the SDK sends: targetType, hookTargetArn, roleArn,
// lifecycleStages, hookDetails, timeoutConfiguration{timeoutInMinutes,
// action}.
func parseHooks(dc map[string]any) ([]hookSpec, error) {
	v, ok := dc["lifecycleHooks"]
	if !ok || v == nil {
		return nil, nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil, errInvalidParameter("deploymentConfiguration.lifecycleHooks must be a list.")
	}
	var specs []hookSpec
	pauses, lambdas := 0, 0
	for i, e := range list {
		m, ok := e.(map[string]any)
		if !ok {
			return nil, errInvalidParameter("deploymentConfiguration.lifecycleHooks[%d] must be an object.", i)
		}
		var h hookSpec
		h.targetType, _ = m["targetType"].(string)
		h.targetArn, _ = m["hookTargetArn"].(string)
		switch h.targetType {
		case HookTargetPause:
			pauses++
		case HookTargetLambda, "":
			// The SDK leaves targetType out for a Lambda hook set before pause hooks existed.
			h.targetType = HookTargetLambda
			lambdas++
			if h.targetArn == "" {
				return nil, errInvalidParameter("deploymentConfiguration.lifecycleHooks[%d].hookTargetArn must be set for an AWS_LAMBDA hook.", i)
			}
			if role, _ := m["roleArn"].(string); role == "" {
				return nil, errInvalidParameter("deploymentConfiguration.lifecycleHooks[%d].roleArn must be set for an AWS_LAMBDA hook.", i)
			}
		default:
			return nil, errInvalidParameter("deploymentConfiguration.lifecycleHooks[%d].targetType must be PAUSE or AWS_LAMBDA; got %q.", i, h.targetType)
		}
		stages, _ := m["lifecycleStages"].([]any)
		if len(stages) == 0 {
			return nil, errInvalidParameter("deploymentConfiguration.lifecycleHooks[%d].lifecycleStages must not be empty.", i)
		}
		for _, s := range stages {
			st, _ := s.(string)
			if !slices.Contains(hookStages, st) {
				return nil, errInvalidParameter("deploymentConfiguration.lifecycleHooks[%d].lifecycleStages has an invalid stage %q.", i, st)
			}
			if h.targetType == HookTargetPause && (st == StageTestTrafficShift || st == StageProductionTrafficShift) {
				return nil, errInvalidParameter("deploymentConfiguration.lifecycleHooks[%d].lifecycleStages: a PAUSE hook cannot run at %s.", i, st)
			}
			h.stages = append(h.stages, st)
		}
		tc, _ := m["timeoutConfiguration"].(map[string]any)
		var err error
		if h.timeout, err = field(tc, "timeoutInMinutes", "deploymentConfiguration.lifecycleHooks["+itoa(i)+"].timeoutConfiguration.timeoutInMinutes",
			defaultHookTimeoutMinutes, 1, maxHookTimeoutMinutes); err != nil {
			return nil, err
		}
		h.timeoutAction, _ = tc["action"].(string)
		switch h.timeoutAction {
		case "":
			h.timeoutAction = HookActionRollback
		case HookActionRollback, HookActionContinue:
		default:
			return nil, errInvalidParameter("deploymentConfiguration.lifecycleHooks[%d].timeoutConfiguration.action must be ROLLBACK or CONTINUE; got %q.", i, h.timeoutAction)
		}
		specs = append(specs, h)
	}
	if pauses > maxPauseHooks {
		return nil, errInvalidParameter("deploymentConfiguration.lifecycleHooks has %d PAUSE hooks; at most %d are allowed.", pauses, maxPauseHooks)
	}
	if lambdas > maxLambdaHooks {
		return nil, errInvalidParameter("deploymentConfiguration.lifecycleHooks has %d AWS_LAMBDA hooks; at most %d are allowed.", lambdas, maxLambdaHooks)
	}
	return specs, nil
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

// hookRun is one execution of a pause hook at one stage of a deployment.
type hookRun struct {
	id            string
	stage         string
	status        string
	expiresAt     time.Time
	timeoutAction string
	updatedAt     time.Time
}

// startHooksLocked starts the pause hooks configured for the current stage:
// each waits for ContinueServiceDeployment (or its timeout), and each sends
// an "ECS Hook State Change" HOOK_AWAITING_ACTION event. AWS_LAMBDA hooks
// are accepted but not invoked: the simulator counts them as SUCCEEDED at
// once.
func (sd *serviceDeployment) startHooksLocked(a *account, at time.Time) {
	specs, _ := parseHooks(sd.config)
	for _, h := range specs {
		if h.targetType != HookTargetPause || !slices.Contains(h.stages, sd.stage) {
			continue
		}
		run := &hookRun{
			id:            "ecs-pause-" + sdToken(43),
			stage:         sd.stage,
			status:        HookAwaitingAction,
			expiresAt:     at.Add(a.srv.minutes(h.timeout)),
			timeoutAction: h.timeoutAction,
			updatedAt:     at,
		}
		sd.hooks = append(sd.hooks, run)
		a.emitHookLocked(sd, run)
	}
}

// awaiting returns the hook runs waiting for an action.
func (sd *serviceDeployment) awaiting() []*hookRun {
	var out []*hookRun
	for _, h := range sd.hooks {
		if h.status == HookAwaitingAction {
			out = append(out, h)
		}
	}
	return out
}

func (sd *serviceDeployment) firstExpiringHook() *hookRun {
	var first *hookRun
	for _, h := range sd.awaiting() {
		if first == nil || h.expiresAt.Before(first.expiresAt) {
			first = h
		}
	}
	return first
}

// cancelHooks ends waiting hooks when the deployment stops or rolls back.
func (sd *serviceDeployment) cancelHooks(at time.Time) {
	for _, h := range sd.awaiting() {
		h.status, h.updatedAt = HookFailed, at
	}
}

// resolveHookLocked applies action to a waiting hook at time at.
func (sd *serviceDeployment) resolveHookLocked(a *account, h *hookRun, action, status string, at time.Time) {
	h.status, h.updatedAt = status, at
	if action == HookActionRollback {
		reason := "Service deployment rolled back by lifecycle hook " + h.id + " at " + h.stage + "."
		if status == HookTimedOut {
			reason = "Service deployment rolled back: lifecycle hook " + h.id + " at " + h.stage + " timed out."
		}
		sd.startRollbackLocked(a, reason, false, at)
		return
	}
	if len(sd.awaiting()) == 0 {
		// The stage's own work starts once its hooks are done.
		sd.stepStart, sd.updatedAt = at, at
	}
}

func (sd *serviceDeployment) timeoutHookLocked(a *account, h *hookRun) {
	sd.resolveHookLocked(a, h, h.timeoutAction, HookTimedOut, h.expiresAt)
}

func (sd *serviceDeployment) hookDetails() []any {
	var out []any
	for _, h := range sd.hooks {
		if h.status != HookAwaitingAction {
			continue
		}
		out = append(out, map[string]any{
			"hookId":        h.id,
			"targetType":    HookTargetPause,
			"status":        h.status,
			"expiresAt":     epoch(h.expiresAt),
			"timeoutAction": h.timeoutAction,
		})
	}
	return out
}

func (a *account) opContinueServiceDeployment(body []byte) (any, error) {
	var req struct {
		ARN    string `json:"serviceDeploymentArn"`
		HookID string `json:"hookId"`
		Action string `json:"action"`
	}
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	switch {
	case req.ARN == "":
		return nil, errInvalidParameter("serviceDeploymentArn must be specified.")
	case req.HookID == "":
		return nil, errInvalidParameter("hookId must be specified.")
	case req.Action != HookActionContinue && req.Action != HookActionRollback:
		return nil, errInvalidParameter("action must be CONTINUE or ROLLBACK; got %q.", req.Action)
	}
	sd, ok := a.serviceDeploymentLocked(req.ARN)
	if !ok {
		return nil, errServiceDeploymentNotFound()
	}
	var run *hookRun
	for _, h := range sd.hooks {
		if h.id == req.HookID {
			run = h
		}
	}
	if run == nil {
		return nil, errInvalidParameter("hookId %q is not a lifecycle hook of service deployment %s.", req.HookID, sd.arn)
	}
	if run.status != HookAwaitingAction || sd.status != SDInProgress {
		return nil, errConflict("Lifecycle hook %s is %s, not AWAITING_ACTION.", run.id, run.status)
	}
	status := HookSucceeded
	if req.Action == HookActionRollback {
		status = HookFailed
	}
	sd.resolveHookLocked(a, run, req.Action, status, a.now())
	return map[string]any{"serviceDeploymentArn": sd.arn}, nil
}

// HookEvent is the EventBridge envelope of an ECS "Hook State Change" event.
//
// AWS documents the detail-type ("ECS Hook State Change") and the event name
// (HOOK_AWAITING_ACTION) sent when a pause hook starts waiting; it publishes
// no sample of the detail. The simulator's detail follows the ECS
// "Deployment State Change" events (eventType, eventName, updatedAt) and
// carries the fields of DeploymentLifecycleHookDetail (hookId, targetType,
// status, expiresAt, timeoutAction) plus serviceDeploymentArn and
// lifecycleStage, the values a consumer needs to call
// ContinueServiceDeployment. Only detail-type and eventName are confirmed.
type HookEvent = Event[HookEventDetail]

// HookEventDetail is the detail of a HookEvent.
type HookEventDetail struct {
	EventType            string `json:"eventType"`
	EventName            string `json:"eventName"`
	ServiceDeploymentARN string `json:"serviceDeploymentArn"`
	HookID               string `json:"hookId"`
	TargetType           string `json:"targetType"`
	LifecycleStage       string `json:"lifecycleStage"`
	Status               string `json:"status"`
	ExpiresAt            string `json:"expiresAt"`
	TimeoutAction        string `json:"timeoutAction"`
	UpdatedAt            string `json:"updatedAt"`
}

// emitHookLocked queues the HOOK_AWAITING_ACTION event of a hook run.
func (a *account) emitHookLocked(sd *serviceDeployment, h *hookRun) {
	s := a.srv
	if s.sink == nil {
		return
	}
	const layout = "2006-01-02T15:04:05.000Z"
	detail := HookEventDetail{
		EventType:            "INFO",
		EventName:            EventHookAwaitingAction,
		ServiceDeploymentARN: sd.arn,
		HookID:               h.id,
		TargetType:           HookTargetPause,
		LifecycleStage:       h.stage,
		Status:               h.status,
		ExpiresAt:            h.expiresAt.UTC().Format(layout),
		TimeoutAction:        h.timeoutAction,
		UpdatedAt:            h.updatedAt.UTC().Format(layout),
	}
	queueEventLocked(a, HookEventDetailType, h.updatedAt, sd.svc.arn, detail)
}
