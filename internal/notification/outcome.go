// Package notification derives what happened to an Environment (its outcomes) from its status
// and tells it to a generic webhook, a Slack incoming webhook or GitHub's deployments API.
//
// Outcomes are read from what the Environment's status already records (status.history, the
// Ready and Stalled conditions, status.gate), so nothing is lost when the manager restarts:
// what was delivered is kept in the Notification's status and compared with what happened.
package notification

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
)

// Outcome is one thing that happened to an Environment, to be told once.
type Outcome struct {
	// Type is one of the deployv1.Outcome* constants.
	Type string
	// Key identifies the outcome among those of its Environment: "<type>/<id>", the same
	// for every status write that shows it, so that it is delivered once.
	Key string
	// Deploy identifies the deploy (or the waiting build, or the stall) the outcome is about.
	Deploy string
	// At is when it happened, as the status records it (zero when not recorded).
	At time.Time
	// Historical is true for an outcome read from status.history (a deploy that started or
	// ended), false for a state the Environment is in now (held, awaiting, stalled).
	Historical bool

	Namespace, Environment, Application string
	// Build is the build deployed (or waiting), nil for a pinned image of no known build.
	Build *deployv1.BuildRef
	// Commit is the build's commit, when the Environment's latest build is that build.
	Commit               string
	Image, PreviousImage string
	Trigger              string
	// Result is the deploy's rollout result (history outcomes).
	Result string
	// Reason is the machine-readable why (a condition or gate reason, ECS's failure reason).
	Reason string
	// Message says in a sentence what happened.
	Message string
	// GitHubKey is the key of the GitHub deployment the outcome belongs to: the build id, or
	// the deploy's id for a deploy of no known build.
	GitHubKey string
}

// DeployID is the identity of a deploy: the same for the pending deploy and the history entry
// it becomes (its start, image and trigger, as the reconciler compares them).
func DeployID(d *deployv1.Deploy) string {
	return fmt.Sprintf("%d-%s", d.StartedAt.Unix(), shortHash(d.Image, d.Trigger))
}

func shortHash(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:10]
}

// Derive returns the outcomes an Environment's status shows, oldest first. Outcomes read from
// the history that happened before since (the Notification's creation) are left out: a new
// Notification does not retell old deploys. States the Environment is in now are included
// whenever they hold.
func Derive(env *deployv1.Environment, since time.Time) []Outcome {
	st := &env.Status
	var out []Outcome
	base := Outcome{Namespace: env.Namespace, Environment: env.Name, Application: env.Spec.Application}
	commitOf := func(b *deployv1.BuildRef) string {
		if b != nil && st.LatestBuild != nil && deployv1.SameBuild(b, st.LatestBuild.Ref()) {
			return st.LatestBuild.Commit
		}
		return ""
	}
	// History is newest first: walk it oldest first.
	for i := len(st.History) - 1; i >= 0; i-- {
		d := &st.History[i]
		id := DeployID(d)
		o := base
		o.Historical, o.Deploy, o.Build, o.Commit = true, id, d.Build, commitOf(d.Build)
		o.Image, o.PreviousImage, o.Trigger, o.Result = d.Image, d.PreviousImage, d.Trigger, d.Result
		o.GitHubKey = "deploy-" + id
		if d.Build != nil && d.Build.ID != "" {
			o.GitHubKey = "build-" + d.Build.ID
		}
		started := d.StartedAt.Time
		if d.ServiceUpdatedAt != nil {
			started = d.ServiceUpdatedAt.Time
		}
		add := func(typ string, at time.Time, reason, msg string) {
			if at.Before(since) {
				return
			}
			x := o
			x.Type, x.Key, x.At, x.Reason, x.Message = typ, typ+"/"+id, at, reason, msg
			out = append(out, x)
		}
		what := describe(d.Image, d.Build)
		add(deployv1.OutcomeDeployStarted, started, d.Trigger,
			fmt.Sprintf("Deploying %s to %s (trigger %s)", what, env.Name, d.Trigger))
		finished := started
		if d.FinishedAt != nil {
			finished = d.FinishedAt.Time
		}
		switch d.Result {
		case deployv1.ResultCompleted:
			add(deployv1.OutcomeRolloutCompleted, finished, d.Result,
				fmt.Sprintf("The rollout of %s to %s completed", what, env.Name))
		case deployv1.ResultFailed:
			add(deployv1.OutcomeRolloutFailed, finished, d.Reason,
				fmt.Sprintf("The rollout of %s to %s failed: %s", what, env.Name, d.Reason))
			if d.RolledBack {
				back := "the previous revision"
				if d.PreviousImage != "" {
					back = describe(d.PreviousImage, d.PreviousBuild)
				}
				add(deployv1.OutcomeRolledBack, finished, d.Reason,
					fmt.Sprintf("ECS rolled %s back to %s after the rollout of %s failed", env.Name, back, what))
			}
		}
		if i == 0 && d.Result == deployv1.ResultInProgress && d.AwaitingHook != nil {
			hk := d.AwaitingHook
			x := o
			x.Type, x.Deploy = deployv1.OutcomeAwaitingApproval, id
			x.Key, x.At, x.Historical = x.Type+"/"+shortHash(id, hk.HookID), hk.Since.Time, false
			x.Reason = deployv1.ReasonAwaitingApproval
			x.Message = fmt.Sprintf("The rollout of %s to %s waits at the pause hook %s (%s): approve with autodeployctl continue %s -n %s",
				what, env.Name, hk.HookID, hk.Stage, env.Name, env.Namespace)
			out = append(out, x)
		}
	}

	latest := st.LatestBuild
	if g := st.Gate; g != nil && g.Reason != "" {
		o := base
		o.Build, o.Commit, o.Reason, o.Message = g.Build, commitOf(g.Build), g.Reason, g.Message
		if o.Build == nil && latest != nil {
			o.Build, o.Commit = latest.Ref(), latest.Commit
		}
		if o.Build != nil && latest != nil && deployv1.SameBuild(o.Build, latest.Ref()) {
			o.Image = latest.Image
		}
		buildID := ""
		if o.Build != nil {
			buildID = o.Build.ID
			o.GitHubKey = "build-" + buildID
		}
		o.Type = deployv1.OutcomeHeld
		if g.Reason == deployv1.ReasonAwaitingApproval {
			o.Type = deployv1.OutcomeAwaitingApproval
		}
		o.Deploy = "build-" + shortHash(buildID)
		o.Key = o.Type + "/" + shortHash(buildID, g.Reason)
		if o.Message == "" {
			o.Message = fmt.Sprintf("%s waits: %s", describeRef(o.Build), g.Reason)
		}
		out = append(out, o)
	}
	if c := meta.FindStatusCondition(st.Conditions, deployv1.StalledCondition); c != nil && c.Status == metav1.ConditionTrue {
		switch c.Reason {
		case deployv1.ReasonRolloutFailed:
			// Told as RolloutFailed.
		case deployv1.ReasonMissingContainerImage:
			o := base
			if latest != nil {
				o.Build, o.Commit, o.Image, o.GitHubKey = latest.Ref(), latest.Commit, latest.Image, "build-"+latest.ID
			}
			id := ""
			if o.Build != nil {
				id = o.Build.ID
			}
			o.Type, o.Deploy, o.Reason, o.Message, o.At = deployv1.OutcomeHeld, "build-"+shortHash(id), c.Reason, c.Message, c.LastTransitionTime.Time
			o.Key = o.Type + "/" + shortHash(id, c.Reason)
			out = append(out, o)
		default:
			o := base
			id := fmt.Sprintf("%d-%s", c.LastTransitionTime.Unix(), shortHash(c.Reason))
			o.Deploy = "stall-" + id
			if p := st.PendingDeploy; p != nil {
				o.Deploy, o.Build, o.Commit, o.Image, o.Trigger = DeployID(p), p.Build, commitOf(p.Build), p.Image, p.Trigger
			}
			o.GitHubKey = "deploy-" + o.Deploy
			if o.Build != nil && o.Build.ID != "" {
				o.GitHubKey = "build-" + o.Build.ID
			}
			o.Type, o.Reason, o.Message, o.At = deployv1.OutcomeStalled, c.Reason, c.Message, c.LastTransitionTime.Time
			o.Key = o.Type + "/" + id
			out = append(out, o)
		}
	}
	return out
}

// Keys returns the keys of outcomes, sorted.
func Keys(outcomes []Outcome) []string {
	keys := make([]string, 0, len(outcomes))
	for _, o := range outcomes {
		keys = append(keys, o.Key)
	}
	sort.Strings(keys)
	return keys
}

func describe(image string, b *deployv1.BuildRef) string {
	if b != nil && b.Number != 0 {
		return fmt.Sprintf("build %d (%s)", b.Number, image)
	}
	return image
}

func describeRef(b *deployv1.BuildRef) string {
	if b == nil {
		return "The build"
	}
	return fmt.Sprintf("Build %d", b.Number)
}

// Wanted reports whether outcome type typ is among outcomes.
func Wanted(outcomes []string, typ string) bool {
	for _, o := range outcomes {
		if strings.EqualFold(o, typ) {
			return true
		}
	}
	return false
}
