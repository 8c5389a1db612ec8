package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/explain"
	"github.com/autodeploy-dev/autodeploy/internal/hookctl"
)

func (r *root) pinCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "pin <environment> <image|build-number|container=image...>",
		Short: "Pin the Environment to an image or to a build it knows (sets spec.pinnedImage or spec.pinnedImages)",
		Long: "Pin the Environment to an image (a rollback): new builds are recorded and not deployed until unpin.\n\n" +
			"A build number (digits) is resolved to its image from status.latestBuild or status.history.\n" +
			"An Environment that manages several containers (spec.ecs.containers) is pinned as a set\n" +
			"(spec.pinnedImages): give a build number, or container=image for every container.\n\n" +
			"Environments managed by GitOps should be pinned in Git: the next sync undoes a pin made here.",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 2 {
				return fmt.Errorf("give the Environment and what to pin it to: %s", cmd.UseLine())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return r.pin(cmd.Context(), args[0], args[1:])
		},
	}
}

var digits = regexp.MustCompile(`^#?[0-9]+$`)

func (r *root) pin(ctx context.Context, name string, what []string) error {
	env, err := r.getEnv(ctx, name)
	if err != nil {
		return err
	}
	spec := &env.Spec
	multi := spec.ECS.Multi()
	var image, from string
	var set map[string]string
	switch {
	case len(what) == 1 && digits.MatchString(what[0]):
		n, err := strconv.ParseInt(strings.TrimPrefix(what[0], "#"), 10, 64)
		if err != nil || n <= 0 {
			return fmt.Errorf("bad build number %q: a build number is a positive integer", what[0])
		}
		image, set, err = resolveBuild(env, n)
		if err != nil {
			return err
		}
		from = fmt.Sprintf(" (build %d)", n)
	case strings.Contains(what[0], "="):
		if !multi {
			return fmt.Errorf("Environment %s manages one container: pin an image or a build number, not container=image", r.envName(env))
		}
		set = map[string]string{}
		for _, kv := range what {
			c, img, ok := strings.Cut(kv, "=")
			if !ok || c == "" {
				return fmt.Errorf("bad pin %q: give container=image for every container", kv)
			}
			if _, dup := set[c]; dup {
				return fmt.Errorf("container %q is named twice", c)
			}
			if err := checkImage(img); err != nil {
				return fmt.Errorf("container %s: %w", c, err)
			}
			set[c] = img
		}
		var missing, unknown []string
		for _, c := range spec.ECS.Containers {
			if _, ok := set[c]; !ok {
				missing = append(missing, c)
			}
		}
		for c := range set {
			if !contains(spec.ECS.Containers, c) {
				unknown = append(unknown, c)
			}
		}
		sort.Strings(unknown)
		switch {
		case len(unknown) > 0:
			return fmt.Errorf("Environment %s manages no container %s (spec.ecs.containers: %s)", r.envName(env), strings.Join(unknown, ", "), strings.Join(spec.ECS.Containers, ", "))
		case len(missing) > 0:
			return fmt.Errorf("a pin holds every container of Environment %s: give an image for %s too", r.envName(env), strings.Join(missing, ", "))
		}
	case len(what) > 1:
		return fmt.Errorf("unexpected arguments %q: give one image or build number", what[1:])
	default:
		if multi {
			return fmt.Errorf("Environment %s manages containers %s: pin a build number, or every container as %s",
				r.envName(env), strings.Join(spec.ECS.Containers, ", "), exampleSet(spec.ECS.Containers))
		}
		if err := checkImage(what[0]); err != nil {
			return err
		}
		image = what[0]
	}
	if multi && set == nil {
		set = map[string]string{spec.ECS.Primary(): image}
	}
	var body []byte
	if multi {
		body, err = json.Marshal(map[string]any{"spec": map[string]any{"pinnedImages": set, "pinnedImage": nil}})
	} else {
		body, err = json.Marshal(map[string]any{"spec": map[string]any{"pinnedImage": image, "pinnedImages": nil}})
	}
	if err != nil {
		return err
	}
	r.warnGitOps(env, "pin")
	if err := r.patch(ctx, env, body); err != nil {
		return err
	}
	target := image
	if multi {
		target = deployv1.JoinImages(set, ", ")
	}
	fmt.Fprintf(r.out(), "Pinned Environment %s to %s%s: new builds are recorded and not deployed until `%s unpin %s -n %s`.\n",
		r.envName(env), target, from, r.name, env.Name, env.Namespace)
	return nil
}

// resolveBuild finds the image(s) of build n among what the Environment knows: its latest
// build, else its history.
func resolveBuild(env *deployv1.Environment, n int64) (string, map[string]string, error) {
	spec, st := &env.Spec, &env.Status
	multi := spec.ECS.Multi()
	if b := st.LatestBuild; b != nil && b.Number == n && spec.Accepts(b) {
		if !multi {
			img, ok := b.ImageFor(spec.ECS.Primary(), true)
			if !ok {
				return "", nil, fmt.Errorf("build %d names no image", n)
			}
			return img, nil, nil
		}
		set := map[string]string{}
		for i, c := range spec.ECS.Containers {
			img, ok := b.ImageFor(c, i == 0)
			if !ok {
				return "", nil, fmt.Errorf("build %d names no image for container %s: pin every container as %s", n, c, exampleSet(spec.ECS.Containers))
			}
			set[c] = img
		}
		return "", set, nil
	}
	var known []string
	seen := map[int64]bool{}
	for i := range st.History {
		d := &st.History[i]
		if d.Build == nil || (d.Build.Application != "" && d.Build.Application != spec.Application) {
			continue
		}
		if d.Build.Number != n {
			if !seen[d.Build.Number] {
				seen[d.Build.Number] = true
				known = append(known, strconv.FormatInt(d.Build.Number, 10))
			}
			continue
		}
		if !multi {
			return d.Image, nil, nil
		}
		set := map[string]string{}
		for i, c := range spec.ECS.Containers {
			img, ok := d.Images[c]
			if !ok && i == 0 {
				img, ok = d.Image, d.Image != ""
			}
			if !ok {
				return "", nil, fmt.Errorf("the deploy of build %d in the history names no image for container %s: pin every container as %s", n, c, exampleSet(spec.ECS.Containers))
			}
			set[c] = img
		}
		return "", set, nil
	}
	latest := "none"
	if b := st.LatestBuild; b != nil {
		latest = strconv.FormatInt(b.Number, 10)
	}
	hist := "none"
	if len(known) > 0 {
		hist = strings.Join(known, ", ")
	}
	return "", nil, fmt.Errorf("build %d is not known to Environment %s/%s: it is neither its latest build (%s) nor in its history (%s); pin the build's image instead",
		n, env.Namespace, env.Name, latest, hist)
}

func checkImage(s string) error {
	if s == "" {
		return errors.New("the image is empty")
	}
	if _, err := reference.ParseNormalizedNamed(s); err != nil {
		return fmt.Errorf("%q is neither a build number nor an image reference: %v", s, err)
	}
	return nil
}

func exampleSet(containers []string) string {
	parts := make([]string, len(containers))
	for i, c := range containers {
		parts[i] = c + "=<image>"
	}
	return strings.Join(parts, " ")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (r *root) unpinCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "unpin <environment>",
		Short: "Remove the Environment's pin: it deploys its latest build again (when auto-deploy is on)",
		Args:  oneEnvironment,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			env, err := r.getEnv(ctx, args[0])
			if err != nil {
				return err
			}
			if !env.Spec.Pinned() {
				fmt.Fprintf(r.out(), "Environment %s is not pinned: nothing changed.\n", r.envName(env))
				return nil
			}
			r.warnGitOps(env, "unpin")
			if err := r.patch(ctx, env, []byte(`{"spec":{"pinnedImage":null,"pinnedImages":null}}`)); err != nil {
				return err
			}
			next := "auto-deploy is off: what runs stays"
			if env.Spec.AutoDeploy {
				next = "it deploys its latest build"
				if b := env.Status.LatestBuild; b != nil {
					next += fmt.Sprintf(" (build %d)", b.Number)
				}
			}
			fmt.Fprintf(r.out(), "Unpinned Environment %s: %s.\n", r.envName(env), next)
			return nil
		},
	}
}

func (r *root) retryCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "retry <environment>",
		Short: "Retry the Environment's failed or stalled deploy once (sets " + deployv1.RetryAnnotation + " to a new value)",
		Args:  oneEnvironment,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			env, err := r.getEnv(ctx, args[0])
			if err != nil {
				return err
			}
			value := r.now().UTC().Format(time.RFC3339Nano)
			if value == env.Annotations[deployv1.RetryAnnotation] {
				value += "-again"
			}
			body, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{deployv1.RetryAnnotation: value}}})
			if err != nil {
				return err
			}
			if err := r.patch(ctx, env, body); err != nil {
				return err
			}
			fmt.Fprintf(r.out(), "Set %s=%s on Environment %s.\n", deployv1.RetryAnnotation, value, r.envName(env))
			if stalled := meta.FindStatusCondition(env.Status.Conditions, deployv1.StalledCondition); stalled == nil || stalled.Status != metav1.ConditionTrue {
				fmt.Fprintln(r.out(), "Nothing has failed now: the controller records the value and does nothing else.")
			} else {
				fmt.Fprintln(r.out(), "The controller retries the failed deploy once.")
			}
			return nil
		},
	}
}

func (r *root) approveCommand() *cobra.Command {
	var build int64
	var force bool
	var waitFor time.Duration
	cmd := &cobra.Command{
		Use:   "approve <environment> [--build N]",
		Short: "Approve the build that waits for approval, or continue the ECS pause hook the rollout waits at",
		Long: "Approve what the Environment waits for:\n\n" +
			"- a build held by the approval gate (status.gate reason AwaitingApproval): sets\n" +
			"  " + deployv1.ApproveAnnotation + " to the waiting build and " + deployv1.ApprovedByAnnotation + " to you,\n" +
			"  as the API server authenticates you, in one write;\n" +
			"- an ECS pause hook the rollout waits at: continues it, as `continue` does.",
		Args: oneEnvironment,
		RunE: func(cmd *cobra.Command, args []string) error {
			return r.approve(cmd.Context(), args[0], build, force, waitFor)
		},
	}
	cmd.Flags().Int64Var(&build, "build", 0, "The build to approve (default: the one waiting for approval).")
	cmd.Flags().BoolVar(&force, "force", false, "Approve --build even when it is not the build waiting for approval.")
	cmd.Flags().DurationVar(&waitFor, "wait", time.Minute, "How long to wait for the controller to act on the approval (0: do not wait).")
	return cmd
}

func (r *root) approve(ctx context.Context, name string, build int64, force bool, waitFor time.Duration) error {
	if build < 0 {
		return fmt.Errorf("bad build number %d: a build number is a positive integer", build)
	}
	env, err := r.getEnv(ctx, name)
	if err != nil {
		return err
	}
	hook := env.Status.AwaitedHook()
	gate := env.Status.Gate
	waiting := gate != nil && gate.Reason == deployv1.ReasonAwaitingApproval && gate.Build != nil
	if hook != nil && build == 0 {
		if waiting {
			return fmt.Errorf("Environment %s waits twice: build %d waits for approval and the rollout of the newest deploy waits at pause hook %s; say which: `%s approve %s -n %s --build %d` or `%s continue %s -n %s`",
				r.envName(env), gate.Build.Number, hook.HookID, r.name, env.Name, env.Namespace, gate.Build.Number, r.name, env.Name, env.Namespace)
		}
		return hookctl.Answer(ctx, r.c, r.key(name), deployv1.HookActionContinue, hookctl.Options{Wait: waitFor}, r.out())
	}
	if !waiting && !(force && build > 0) {
		msg := fmt.Sprintf("nothing waits for approval on Environment %s", r.envName(env))
		if gate != nil {
			msg += fmt.Sprintf(": its build waits for something else (%s: %s)", gate.Reason, gate.Message)
		} else {
			msg += ": " + explain.Summary(env)
		}
		if build > 0 {
			msg += fmt.Sprintf("; --force approves build %d ahead", build)
		}
		return errors.New(msg)
	}
	n := build
	if waiting {
		if build > 0 && build != gate.Build.Number && !force {
			return fmt.Errorf("build %d is not the build waiting for approval on Environment %s (build %d waits); --force approves it anyway", build, r.envName(env), gate.Build.Number)
		}
		if build == 0 {
			n = gate.Build.Number
		}
	}
	annotations := map[string]any{deployv1.ApproveAnnotation: strconv.FormatInt(n, 10), deployv1.ApprovedByAnnotation: nil}
	user, err := r.whoAmI(ctx)
	if err != nil {
		fmt.Fprintf(r.errOut(), "Warning: the API server did not say who you are (SelfSubjectReview: %v): the approval names no approver.\n", err)
	} else {
		annotations[deployv1.ApprovedByAnnotation] = user
	}
	body, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": annotations}})
	if err != nil {
		return err
	}
	if err := r.patch(ctx, env, body); err != nil {
		return err
	}
	as := ""
	if user != "" {
		as = " as " + user
	}
	fmt.Fprintf(r.out(), "Approved build %d of Environment %s%s (%s=%d).\n", n, r.envName(env), as, deployv1.ApproveAnnotation, n)
	if waitFor <= 0 || !waiting || n != gate.Build.Number {
		return nil
	}
	var last *deployv1.Environment
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, waitFor, true, func(ctx context.Context) (bool, error) {
		e := &deployv1.Environment{}
		if err := r.c.Get(ctx, r.key(name), e); err != nil {
			return false, err
		}
		last = e
		g := e.Status.Gate
		return g == nil || g.Reason != deployv1.ReasonAwaitingApproval || g.Build == nil || g.Build.Number != n, nil
	})
	if err != nil {
		return fmt.Errorf("the controller has not acted on the approval of build %d within %s (is the manager running?); the approval stays set", n, waitFor)
	}
	fmt.Fprintf(r.out(), "Environment %s: %s\n", r.envName(env), explain.Summary(last))
	return nil
}

func (r *root) hookCommand(action string) *cobra.Command {
	var waitFor time.Duration
	verb := "Continue"
	if action == deployv1.HookActionRollback {
		verb = "Roll back"
	}
	cmd := &cobra.Command{
		Use:   action + " <environment>",
		Short: verb + " the rollout of an Environment waiting at an ECS pause hook",
		Long: fmt.Sprintf("Sets %s=%s:<hookID> for the pause hook the Environment's rollout waits at, and shows what became of it.",
			deployv1.HookActionAnnotation, action),
		Args: oneEnvironment,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := r.connect(); err != nil {
				return err
			}
			return hookctl.Answer(cmd.Context(), r.c, r.key(args[0]), action, hookctl.Options{Wait: waitFor}, r.out())
		},
	}
	cmd.Flags().DurationVar(&waitFor, "wait", time.Minute, "How long to wait for the controller's answer (0: do not wait).")
	return cmd
}
