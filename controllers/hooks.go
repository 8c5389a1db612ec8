package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ktypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
)

// Event reasons for pause hooks.
const (
	// EventAwaitingApproval: the rollout waits at a pause hook.
	EventAwaitingApproval = "AwaitingApproval"
	// EventHookContinued and EventHookRolledBack: ECS accepted the answer to a pause hook.
	EventHookContinued  = "HookContinued"
	EventHookRolledBack = "HookRolledBack"
	// EventHookFinished: ECS no longer awaits a pause hook (answered, or timed out).
	EventHookFinished = "HookFinished"
	// EventHookActionInvalid: the hook-action annotation has a value that is no answer.
	EventHookActionInvalid = "HookActionInvalid"
	// EventHookActionRejected: the hook-action annotation answers no hook that awaits.
	EventHookActionRejected = "HookActionRejected"
	// EventHookActionFailed: ECS refused the answer, or could not be reached.
	EventHookActionFailed = "HookActionFailed"
)

// Hook statuses ECS reports (DeploymentLifecycleHookDetail.status).
const (
	HookAwaitingAction = string(types.DeploymentLifecycleHookStatusAwaitingAction)
	HookTimedOut       = string(types.DeploymentLifecycleHookStatusTimedOut)
)

// ParseHookAction parses a value of the hook-action annotation: "continue:<hookID>" or
// "rollback:<hookID>".
func ParseHookAction(v string) (action, hookID string, err error) {
	action, hookID, ok := strings.Cut(strings.TrimSpace(v), ":")
	action = strings.ToLower(action)
	switch {
	case !ok || hookID == "" || strings.ContainsAny(hookID, " \t\n:") || len(hookID) > 256:
		return "", "", fmt.Errorf("annotation %s=%q is not continue:<hookID> or rollback:<hookID>", deployv1.HookActionAnnotation, v)
	case action != deployv1.HookActionContinue && action != deployv1.HookActionRollback:
		return "", "", fmt.Errorf("annotation %s=%q: action %q is neither %s nor %s (the value is continue:<hookID> or rollback:<hookID>)",
			deployv1.HookActionAnnotation, v, action, deployv1.HookActionContinue, deployv1.HookActionRollback)
	}
	return action, hookID, nil
}

// HookActionValue is the annotation value that answers hookID with action.
func HookActionValue(action, hookID string) string { return deployv1.HookActionValue(action, hookID) }

// AwaitedHook returns the pause hook the newest deploy's rollout waits at, or nil.
func AwaitedHook(env *deployv1.Environment) *deployv1.AwaitingHook { return env.Status.AwaitedHook() }

// hookConditions gives the Ready status, reason and message of a rollout that waits at a
// pause hook: Ready=False, AwaitingApproval, with what to do, until someone answers.
func hookConditions(env *deployv1.Environment, last *deployv1.Deploy) (metav1.ConditionStatus, string, string) {
	h := last.AwaitingHook
	what := fmt.Sprintf("ECS deployment %s of %s", h.ServiceDeploymentARN, describe(last.Image, last.Build))
	switch {
	case h.Action != "" && h.ActionSentAt == nil:
		return metav1.ConditionUnknown, deployv1.ReasonRolloutInProgress,
			fmt.Sprintf("%s: sending %s for pause hook %s to ECS", what, h.Action, h.HookID)
	case h.Action != "":
		return metav1.ConditionUnknown, deployv1.ReasonRolloutInProgress,
			fmt.Sprintf("%s: ECS accepted %s for pause hook %s at %s and is moving on", what, h.Action, h.HookID, h.ActionSentAt.UTC().Format(time.RFC3339))
	}
	stage := ""
	if h.Stage != "" {
		stage = " at stage " + h.Stage
	}
	expiry := "ECS waits until its timeout"
	if h.ExpiresAt != nil {
		expiry = "ECS waits until " + h.ExpiresAt.UTC().Format(time.RFC3339)
	}
	then := "then takes the hook's timeout action"
	switch h.TimeoutAction {
	case string(types.DeploymentLifecycleHookActionRollback):
		then = "then rolls the deployment back"
	case string(types.DeploymentLifecycleHookActionContinue):
		then = "then continues the deployment"
	}
	cmd := func(action string) string {
		return fmt.Sprintf("kubectl -n %s annotate environment %s %s=%s --overwrite", env.Namespace, env.Name,
			deployv1.HookActionAnnotation, HookActionValue(action, h.HookID))
	}
	return metav1.ConditionFalse, deployv1.ReasonAwaitingApproval, fmt.Sprintf(
		"%s waits at pause hook %s%s for approval; %s, %s. Continue: %s (or autodeployctl continue %s -n %s). Roll back: %s (or autodeployctl rollback %s -n %s)",
		what, h.HookID, stage, expiry, then, cmd(deployv1.HookActionContinue), env.Name, env.Namespace,
		cmd(deployv1.HookActionRollback), env.Name, env.Namespace)
}

// answerHook answers a new value of the hook-action annotation once, and sends an answer
// recorded but not yet sent (a restart, a failed call) to ECS. An answer is recorded in the
// status before ECS is called, so that two writers never both send it; a value that answers
// no hook awaited now (invalid, another hook id, nothing awaits) is recorded as handled with
// a Warning Event and no ECS call. It updates *base and *env to what it wrote; stop is true
// when the reconcile must end with res and err.
func (r *EnvironmentReconciler) answerHook(ctx context.Context, key ktypes.NamespacedName, base, env **deployv1.Environment) (stop bool, res ctrl.Result, err error) {
	e := *env
	v := e.Annotations[deployv1.HookActionAnnotation]
	if v != e.Status.HookActionHandled {
		if done, ok := r.hookAnswered.Load(key); ok && done.(string) == v {
			// The cache has not caught up with the write that answered v: read the live one.
			live := &deployv1.Environment{}
			if err := r.apiReader().Get(ctx, key, live); err != nil {
				return true, ctrl.Result{}, client.IgnoreNotFound(err)
			}
			adoptTarget(live)
			*env, *base, e = live, live.DeepCopy(), live
		}
	}
	if v != e.Status.HookActionHandled {
		e.Status.HookActionHandled = v
		if v != "" {
			r.judgeHookAction(ctx, e, v)
		}
		if res, err := r.patchStatus(ctx, *base, e); err != nil || !res.IsZero() {
			return true, res, err
		}
		r.hookAnswered.Store(key, v)
		*base = e.DeepCopy()
	}
	if h := AwaitedHook(e); h != nil && h.Action != "" && h.ActionSentAt == nil {
		return r.sendHookAction(ctx, base, env, *h)
	}
	return false, ctrl.Result{}, nil
}

// judgeHookAction records the answer v on the hook e awaits, or tells why it answers none.
func (r *EnvironmentReconciler) judgeHookAction(ctx context.Context, e *deployv1.Environment, v string) {
	logger := log.FromContext(ctx)
	action, hookID, err := ParseHookAction(v)
	if err != nil {
		logger.Info("Invalid hook action on Environment", "value", v)
		r.Recorder.Eventf(e, nil, "Warning", EventHookActionInvalid, "AnswerHook", "%s; nothing was sent to ECS", err.Error())
		return
	}
	h := AwaitedHook(e)
	switch {
	case h == nil:
		r.Recorder.Eventf(e, nil, "Warning", EventHookActionRejected, "AnswerHook",
			"Annotation %s=%s answers no pause hook: no rollout of this Environment waits at one; nothing was sent to ECS", deployv1.HookActionAnnotation, v)
	case h.HookID != hookID:
		r.Recorder.Eventf(e, nil, "Warning", EventHookActionRejected, "AnswerHook",
			"Annotation %s=%s names pause hook %s, but ECS deployment %s waits at pause hook %s; nothing was sent to ECS (answer it with %s or %s)",
			deployv1.HookActionAnnotation, v, hookID, h.ServiceDeploymentARN, h.HookID,
			HookActionValue(deployv1.HookActionContinue, h.HookID), HookActionValue(deployv1.HookActionRollback, h.HookID))
	case h.Action != "":
		r.Recorder.Eventf(e, nil, "Warning", EventHookActionRejected, "AnswerHook",
			"Annotation %s=%s: pause hook %s was answered with %s already; nothing more was sent to ECS", deployv1.HookActionAnnotation, v, h.HookID, h.Action)
	default:
		logger.Info("Answering pause hook of Environment", "hookID", hookID, "action", action, "serviceDeployment", h.ServiceDeploymentARN)
		h.Action = action
		settle(e)
	}
}

// sendHookAction calls ContinueServiceDeployment with the answer recorded on hook h and
// records what ECS said.
func (r *EnvironmentReconciler) sendHookAction(ctx context.Context, base, env **deployv1.Environment, h deployv1.AwaitingHook) (bool, ctrl.Result, error) {
	logger := log.FromContext(ctx)
	e := *env
	target := e.Spec.ECS
	if e.Status.Target != nil {
		target = *e.Status.Target
	}
	ecsAction := types.DeploymentLifecycleHookActionContinue
	if h.Action == deployv1.HookActionRollback {
		ecsAction = types.DeploymentLifecycleHookActionRollback
	}
	api, err := r.ECS(ctx, target)
	if err == nil {
		logger.Info("Sending the answer to a pause hook", "hookID", h.HookID, "action", h.Action, "serviceDeployment", h.ServiceDeploymentARN)
		_, err = api.ContinueServiceDeployment(ctx, &ecs.ContinueServiceDeploymentInput{
			ServiceDeploymentArn: aws.String(h.ServiceDeploymentARN), HookId: aws.String(h.HookID), Action: ecsAction,
		})
	}
	same := func(x *deployv1.Environment) *deployv1.AwaitingHook {
		if a := AwaitedHook(x); a != nil && a.HookID == h.HookID && a.Action == h.Action && a.ActionSentAt == nil {
			return a
		}
		return nil
	}
	var permanent *deployError
	switch {
	case err == nil:
		now := metav1.NewTime(r.Now())
		live, cerr := r.commit(ctx, *base, e, func(x *deployv1.Environment) {
			if a := same(x); a != nil {
				a.ActionSentAt = &now
				settle(x)
			}
		})
		if cerr != nil || live == nil {
			return true, ctrl.Result{}, cerr
		}
		reason, verb := EventHookContinued, "continue"
		if h.Action == deployv1.HookActionRollback {
			reason, verb = EventHookRolledBack, "roll back"
		}
		r.Recorder.Eventf(live, nil, "Normal", reason, "AnswerHook", "ECS accepted to %s ECS deployment %s at pause hook %s",
			verb, h.ServiceDeploymentARN, h.HookID)
		*env, *base = live, live.DeepCopy()
		return false, ctrl.Result{}, nil
	case !errors.As(classifyHook(err, target), &permanent):
		msg := transientMessage(err)
		r.Recorder.Eventf(e, nil, "Warning", EventHookActionFailed, "AnswerHook", "Answering pause hook %s: %s", h.HookID, msg)
		// The answer stays recorded: the workqueue's backoff sends it again.
		return true, ctrl.Result{}, err
	default:
		gone := permanent.reason == reasonHookGone
		logger.Info("ECS refused the answer to a pause hook", "hookID", h.HookID, "error", err.Error())
		live, cerr := r.commit(ctx, *base, e, func(x *deployv1.Environment) {
			if a := same(x); a != nil {
				if gone {
					finishHook(x.Status.LastDeploy(), h.HookID)
				} else {
					a.Action = ""
				}
				settle(x)
			}
		})
		if cerr != nil || live == nil {
			return true, ctrl.Result{}, cerr
		}
		r.Recorder.Eventf(live, nil, "Warning", EventHookActionFailed, "AnswerHook", "%s", permanent.message)
		*env, *base = live, live.DeepCopy()
		return false, ctrl.Result{}, nil
	}
}

const reasonHookGone = "HookNotAwaiting"

// classifyHook classifies an error of ContinueServiceDeployment: transient errors are
// returned unchanged; a hook ECS no longer awaits, and any other refusal, as a *deployError
// whose message says what happened and what to do.
func classifyHook(err error, target deployv1.ECSTarget) error {
	var notFound *types.ServiceDeploymentNotFoundException
	var conflict *types.ConflictException
	var invalid *types.InvalidParameterException
	var denied *types.AccessDeniedException
	switch {
	case errors.As(err, &notFound), errors.As(err, &conflict), errors.As(err, &invalid):
		var msg string
		if errors.As(err, &notFound) {
			msg = notFound.ErrorMessage()
		} else if errors.As(err, &conflict) {
			msg = conflict.ErrorMessage()
		} else {
			msg = invalid.ErrorMessage()
		}
		return &deployError{reasonHookGone, fmt.Sprintf(
			"ECS no longer awaits this pause hook (%s): nothing to answer; the rollout goes on as ECS decided", msg), err}
	case errors.As(err, &denied):
		return &deployError{deployv1.ReasonAccessDenied, fmt.Sprintf(
			"Access denied by ECS (%s): grant the controller's role ecs:ContinueServiceDeployment (docs/iam.md), then answer the hook again", denied.ErrorMessage()), err}
	}
	if c := classify(err, target); c != err {
		var de *deployError
		if errors.As(c, &de) {
			return &deployError{de.reason, de.message + "; answer the hook again once fixed", err}
		}
		return c
	}
	return err
}

// settle re-decides e's conditions after its pause-hook state changed.
func settle(e *deployv1.Environment) {
	desired := Decide(e)
	e.Status.DesiredImage = desired.Image
	setSettledConditions(e, desired)
}

// finishHook records that ECS no longer awaits hookID in d's rollout.
func finishHook(d *deployv1.Deploy, hookID string) {
	if d == nil {
		return
	}
	if d.AwaitingHook != nil && d.AwaitingHook.HookID == hookID {
		d.AwaitingHook = nil
	}
	if !slices.Contains(d.FinishedHooks, hookID) {
		d.FinishedHooks = append(d.FinishedHooks, hookID)
		if n := len(d.FinishedHooks); n > deployv1.MaxFinishedHooks {
			d.FinishedHooks = d.FinishedHooks[n-deployv1.MaxFinishedHooks:]
		}
	}
}

// HookObservation is the state of a pause hook of an ECS service deployment, as an ECS "Hook
// State Change" event or DescribeServiceDeployments tells.
type HookObservation struct {
	ServiceDeploymentARN string
	HookID               string
	// Status is AWAITING_ACTION while ECS waits; any other status (SUCCEEDED, FAILED,
	// TIMED_OUT, …) means it no longer does.
	Status        string
	Stage         string
	ExpiresAt     *time.Time
	TimeoutAction string
	At            time.Time
}

// HookOutcome is what applying a HookObservation did.
type HookOutcome int

const (
	// HookNoMatch: no rollout of the Environment is this service deployment's.
	HookNoMatch HookOutcome = iota
	// HookUnchanged: the Environment knew it already (a duplicate or a late event).
	HookUnchanged
	// HookApplied: the Environment changed.
	HookApplied
	// HookEarly: a deploy of the service is still being recorded and may be the one the
	// observation is about: it must be delivered again later.
	HookEarly
)

// ApplyHook records obs on the rollout of env's newest deploy if obs is about it. A rollout
// matches when it (or its awaited hook) names obs's service deployment, or, when no service
// deployment is recorded on it yet, when obs is not older than the service update (clocks may
// differ by eventSkew).
func ApplyHook(env *deployv1.Environment, obs HookObservation) HookOutcome {
	last := env.Status.LastDeploy()
	inProgress := last != nil && last.Result == deployv1.ResultInProgress
	known := inProgress && (last.ServiceDeploymentARN == obs.ServiceDeploymentARN ||
		last.AwaitingHook != nil && last.AwaitingHook.ServiceDeploymentARN == obs.ServiceDeploymentARN)
	if !known {
		if p := env.Status.PendingDeploy; p != nil && (obs.At.IsZero() || !obs.At.Before(p.StartedAt.Add(-eventSkew))) {
			return HookEarly
		}
		if !inProgress {
			return HookNoMatch
		}
		from := last.StartedAt
		if last.ServiceUpdatedAt != nil {
			from = *last.ServiceUpdatedAt
		}
		if !obs.At.IsZero() && obs.At.Before(from.Add(-eventSkew)) {
			return HookNoMatch
		}
		if a := last.AwaitingHook; last.ServiceDeploymentARN != "" || a != nil && a.ServiceDeploymentARN != obs.ServiceDeploymentARN {
			return HookNoMatch // the rollout is another service deployment's
		}
	}
	if slices.Contains(last.FinishedHooks, obs.HookID) {
		return HookUnchanged
	}
	if obs.Status != HookAwaitingAction {
		finishHook(last, obs.HookID)
		settle(env)
		return HookApplied
	}
	h := &deployv1.AwaitingHook{
		ServiceDeploymentARN: obs.ServiceDeploymentARN, HookID: obs.HookID, Stage: obs.Stage,
		TimeoutAction: obs.TimeoutAction, Since: metav1.NewTime(obs.At),
	}
	if obs.ExpiresAt != nil {
		t := metav1.NewTime(*obs.ExpiresAt)
		h.ExpiresAt = &t
	}
	if a := last.AwaitingHook; a != nil {
		if a.HookID == obs.HookID {
			if a.Stage == h.Stage && a.TimeoutAction == h.TimeoutAction && (h.ExpiresAt == nil || a.ExpiresAt != nil && a.ExpiresAt.Equal(h.ExpiresAt)) {
				return HookUnchanged
			}
			h.Since, h.Action, h.ActionSentAt = a.Since, a.Action, a.ActionSentAt
		} else {
			// ECS waits at another hook now: it is done with the one before.
			finishHook(last, a.HookID)
		}
	}
	last.AwaitingHook = h
	settle(env)
	return HookApplied
}

// HookSink records pause-hook observations. *HookRecorder is one.
type HookSink interface {
	RecordHook(ctx context.Context, key ktypes.NamespacedName, obs HookObservation) (HookOutcome, error)
}

// HookRecorder writes pause-hook observations to Environments, with optimistic concurrency.
type HookRecorder struct {
	// Cache, when set, gives the Environment a first write starts from; Reader reads the
	// live one after a conflict or to confirm a write is not needed (before each write when
	// Cache is nil).
	Cache    client.Reader
	Reader   client.Reader
	Writer   client.StatusClient
	Recorder events.EventRecorder
}

// RecordHook applies obs to the Environment key.
func (r *HookRecorder) RecordHook(ctx context.Context, key ktypes.NamespacedName, obs HookObservation) (HookOutcome, error) {
	var outcome HookOutcome
	var before *deployv1.AwaitingHook
	env, err := patchLiveStatus(ctx, r.Cache, r.Reader, r.Writer, key, func(env *deployv1.Environment) bool {
		before = AwaitedHook(env).DeepCopy()
		outcome = ApplyHook(env, obs)
		return outcome == HookApplied
	})
	if apierrors.IsNotFound(err) {
		return HookNoMatch, nil
	}
	if err != nil || outcome != HookApplied {
		return outcome, err
	}
	log.FromContext(ctx).Info("Pause hook of Environment changed", "environment", key, "hookID", obs.HookID,
		"status", obs.Status, "serviceDeployment", obs.ServiceDeploymentARN)
	if r.Recorder == nil {
		return outcome, nil
	}
	if h := AwaitedHook(env); h != nil && h.HookID == obs.HookID && (before == nil || before.HookID != h.HookID) {
		_, _, msg := hookConditions(env, env.Status.LastDeploy())
		r.Recorder.Eventf(env, nil, "Normal", EventAwaitingApproval, "Rollout", "%s", msg)
	} else if before != nil && before.HookID == obs.HookID && obs.Status != HookAwaitingAction {
		typ, how := "Normal", "it is "+strings.ToLower(obs.Status)
		if obs.Status == HookTimedOut {
			typ, how = "Warning", "it timed out and ECS took its timeout action "+orDefault(before.TimeoutAction, "")
		}
		r.Recorder.Eventf(env, nil, typ, EventHookFinished, "Rollout", "ECS deployment %s no longer waits at pause hook %s: %s",
			obs.ServiceDeploymentARN, obs.HookID, strings.TrimSpace(how))
	}
	return outcome, nil
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
