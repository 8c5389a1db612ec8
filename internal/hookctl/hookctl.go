// Package hookctl answers the pause hook an Environment's rollout waits at, for the
// autodeployctl continue and rollback commands: it sets the hook-action annotation for the
// hook the Environment awaits and reports what the controller did with it.
package hookctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
)

// Options of Answer.
type Options struct {
	// Wait is how long to wait for the controller's answer; zero returns once the annotation
	// is set.
	Wait time.Duration
	// Interval between two looks at the Environment while waiting; 250ms when zero.
	Interval time.Duration
}

// Answer answers the pause hook the Environment key awaits with action (continue or
// rollback). It refuses, changing nothing, when no rollout of the Environment waits at a pause
// hook or the hook was answered already.
func Answer(ctx context.Context, c client.Client, key types.NamespacedName, action string, opts Options, out io.Writer) error {
	if action != deployv1.HookActionContinue && action != deployv1.HookActionRollback {
		return fmt.Errorf("action %q is neither %s nor %s", action, deployv1.HookActionContinue, deployv1.HookActionRollback)
	}
	env := &deployv1.Environment{}
	if err := c.Get(ctx, key, env); err != nil {
		return fmt.Errorf("reading Environment %s: %w", key, err)
	}
	h := env.Status.AwaitedHook()
	if h == nil {
		msg := fmt.Sprintf("Environment %s awaits no pause hook: nothing to %s", key, action)
		if ready := meta.FindStatusCondition(env.Status.Conditions, deployv1.ReadyCondition); ready != nil {
			msg += fmt.Sprintf(" (Ready=%s %s: %s)", ready.Status, ready.Reason, ready.Message)
		}
		return errors.New(msg)
	}
	if h.Action != "" {
		return fmt.Errorf("pause hook %s of Environment %s was answered with %s already", h.HookID, key, h.Action)
	}
	value := deployv1.HookActionValue(action, h.HookID)
	if env.Annotations[deployv1.HookActionAnnotation] == value {
		// This very answer was given before and not sent (ECS refused it, say for missing
		// permissions): take it back first, so that setting it again is a new value.
		if err := setAnnotation(ctx, c, env, ""); err != nil {
			return err
		}
		if err := waitFor(ctx, c, key, opts, func(e *deployv1.Environment) bool { return e.Status.HookActionHandled != value }); err != nil {
			return fmt.Errorf("waiting for the controller to take back the earlier answer %s: %w", value, err)
		}
		if err := c.Get(ctx, key, env); err != nil {
			return fmt.Errorf("reading Environment %s: %w", key, err)
		}
	}
	if err := setAnnotation(ctx, c, env, value); err != nil {
		return err
	}
	fmt.Fprintf(out, "Set %s=%s on Environment %s\n", deployv1.HookActionAnnotation, value, key)
	if opts.Wait <= 0 {
		return nil
	}
	var result error
	err := waitFor(ctx, c, key, opts, func(e *deployv1.Environment) bool {
		if e.Status.HookActionHandled != value {
			return false
		}
		cur := e.Status.AwaitedHook()
		switch {
		case cur == nil || cur.HookID != h.HookID:
			// The answer was handled and the rollout has moved past the hook (ECS may take
			// the answer and leave the hook before this look).
			fmt.Fprintf(out, "ECS is past pause hook %s of ECS deployment %s\n", h.HookID, h.ServiceDeploymentARN)
			return true
		case cur.Action == action && cur.ActionSentAt != nil:
			fmt.Fprintf(out, "ECS accepted: %s ECS deployment %s at pause hook %s\n", verb(action), h.ServiceDeploymentARN, h.HookID)
			return true
		case cur.Action == "":
			msg := "the controller did not send the answer"
			if ready := meta.FindStatusCondition(e.Status.Conditions, deployv1.ReadyCondition); ready != nil {
				msg += " (Ready=" + string(ready.Status) + " " + ready.Reason + ")"
			}
			result = fmt.Errorf("%s; see the Warning Events: kubectl -n %s get events --field-selector involvedObject.name=%s", msg, key.Namespace, key.Name)
			return true
		}
		return false
	})
	if err != nil {
		return fmt.Errorf("the annotation is set, but the controller has not answered within %s: %w", opts.Wait, err)
	}
	return result
}

func verb(action string) string {
	if action == deployv1.HookActionRollback {
		return "rolling back"
	}
	return "continuing"
}

// setAnnotation sets (or, with value "", removes) the hook-action annotation.
func setAnnotation(ctx context.Context, c client.Client, env *deployv1.Environment, value string) error {
	base := env.DeepCopy()
	if value == "" {
		delete(env.Annotations, deployv1.HookActionAnnotation)
	} else {
		if env.Annotations == nil {
			env.Annotations = map[string]string{}
		}
		env.Annotations[deployv1.HookActionAnnotation] = value
	}
	if err := c.Patch(ctx, env, client.MergeFrom(base)); err != nil {
		return fmt.Errorf("annotating Environment %s/%s: %w", env.Namespace, env.Name, err)
	}
	return nil
}

func waitFor(ctx context.Context, c client.Client, key types.NamespacedName, opts Options, done func(*deployv1.Environment) bool) error {
	interval := opts.Interval
	if interval <= 0 {
		interval = 250 * time.Millisecond
	}
	timeout := opts.Wait
	if timeout <= 0 {
		timeout = time.Minute
	}
	return wait.PollUntilContextTimeout(ctx, interval, timeout, true, func(ctx context.Context) (bool, error) {
		env := &deployv1.Environment{}
		if err := c.Get(ctx, key, env); err != nil {
			return false, err
		}
		return done(env), nil
	})
}
