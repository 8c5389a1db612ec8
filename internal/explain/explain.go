// Package explain says, from an Environment's spec and persisted status alone, why the
// Environment is where it is: one paragraph for `autodeployctl why` and a short reason for the
// list. It reads what the reconciler wrote (conditions, status.gate, the history) and decides
// nothing itself, so every reader sees the reconciler's answer.
package explain

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
)

// Kind names the situation Why found, for callers and tests that branch on it.
type Kind string

// The situations Why tells apart, in the order it looks for them.
const (
	KindNotReconciled Kind = "NotReconciled"
	KindDeleting      Kind = "Deleting"
	KindStalled       Kind = "Stalled"
	KindAwaitingHook  Kind = "AwaitingHook"
	KindHeld          Kind = "Held"
	KindPinned        Kind = "Pinned"
	KindGate          Kind = "Gate"
	KindRollingOut    Kind = "RollingOut"
	KindAutoDeployOff Kind = "AutoDeployOff"
	KindWaiting       Kind = "WaitingForBuild"
	KindNewerRunning  Kind = "NewerBuildRunning"
	KindDeployed      Kind = "Deployed"
	KindNotReady      Kind = "NotReady"
)

// Explanation is Why's answer.
type Explanation struct {
	Kind Kind
	// Text is one paragraph, with the command to run where one helps.
	Text string
}

// Why explains the current decision for env. cmd is the command line that runs the CLI
// ("autodeployctl" or "kubectl autodeploy"), used in the hints; now dates the waits.
func Why(env *deployv1.Environment, cmd string, now time.Time) Explanation {
	w := writer{env: env, cmd: cmd, now: now}
	kind := w.explain()
	return Explanation{Kind: kind, Text: strings.Join(w.parts, " ")}
}

type writer struct {
	env   *deployv1.Environment
	cmd   string
	now   time.Time
	parts []string
}

func (w *writer) say(format string, args ...any) {
	w.parts = append(w.parts, fmt.Sprintf(format, args...))
}

// hint returns the command line for sub on this Environment.
func (w *writer) hint(sub string, extra ...string) string {
	s := w.cmd + " " + sub + " " + w.env.Name
	if w.env.Namespace != "" {
		s += " -n " + w.env.Namespace
	}
	for _, e := range extra {
		s += " " + e
	}
	return "`" + s + "`"
}

func (w *writer) explain() Kind {
	env, st := w.env, &w.env.Status
	name := env.Namespace + "/" + env.Name
	if env.Namespace == "" {
		name = env.Name
	}
	ready := meta.FindStatusCondition(st.Conditions, deployv1.ReadyCondition)
	stalled := meta.FindStatusCondition(st.Conditions, deployv1.StalledCondition)
	last := st.LastDeploy()

	if env.DeletionTimestamp != nil {
		w.say("Environment %s is being deleted: its rollout is no longer followed and nothing more is deployed.", name)
		return KindDeleting
	}
	if ready == nil {
		w.say("Environment %s has not been reconciled yet: the controller has written no Ready condition (is the manager running, and does it watch namespace %s?).", name, env.Namespace)
		return KindNotReconciled
	}
	if h := st.AwaitedHook(); h != nil {
		w.say("Environment %s's rollout of %s waits at ECS pause hook %s", name, describeDeploy(last), h.HookID)
		if h.Stage != "" {
			w.parts[len(w.parts)-1] += " (stage " + h.Stage + ")"
		}
		w.parts[len(w.parts)-1] += " since " + clock(h.Since.Time) + "."
		if h.ExpiresAt != nil && h.TimeoutAction != "" {
			w.say("If nobody answers, ECS will %s at %s.", strings.ToLower(h.TimeoutAction), clock(h.ExpiresAt.Time))
		}
		if h.Action != "" {
			w.say("It was answered with %s, which is being sent to ECS.", h.Action)
		} else {
			w.say("Approve it with %s (the same as %s), or roll it back with %s.", w.hint("approve"), w.hint("continue"), w.hint("rollback"))
		}
		w.gateToo()
		return KindAwaitingHook
	}
	if stalled != nil && stalled.Status == metav1.ConditionTrue && ready.Reason == deployv1.ReasonRolloutFailed {
		w.say("Environment %s holds after a failed rollout (%s): %s.", name, ready.Reason, trimDot(ready.Message))
		w.say("The failed build is not deployed again by itself: publish a new build, pin an image (%s), or retry it with %s.", w.hint("pin", "<image|build>"), w.hint("retry"))
		return KindHeld
	}
	if stalled != nil && stalled.Status == metav1.ConditionTrue {
		w.say("Environment %s is stalled (%s): %s.", name, stalled.Reason, trimDot(stalled.Message))
		w.say("The controller makes no further ECS call for it until the spec changes or you retry with %s once the cause is fixed.", w.hint("retry"))
		return KindStalled
	}
	if env.Spec.Pinned() {
		w.say("Environment %s is pinned to %s", name, env.Spec.PinText())
		if b := st.LatestBuild; b != nil && !sameBuildAsDeployed(st) {
			w.parts[len(w.parts)-1] += fmt.Sprintf(": new builds are recorded and not deployed (the latest is build %d)", b.Number)
		}
		w.parts[len(w.parts)-1] += "."
		if rollingOut(ready) {
			w.say("The pin is rolling out: %s.", rolloutText(last, ready))
		} else if ready.Status != metav1.ConditionTrue {
			w.say("Ready is %s (%s): %s.", ready.Status, ready.Reason, trimDot(ready.Message))
		} else if st.DeployedImage != "" {
			w.say("The service runs %s.", describe(st.DeployedImage, st.DeployedBuild))
		}
		w.say("Deploys resume from the latest build with %s (unless the pin is set in Git).", w.hint("unpin"))
		return KindPinned
	}
	if g := st.Gate; g != nil {
		w.gate(name, g)
		if rollingOut(ready) {
			w.say("Meanwhile %s.", rolloutText(last, ready))
		} else if st.DeployedImage != "" {
			w.say("The service keeps running %s.", describe(st.DeployedImage, st.DeployedBuild))
		}
		return KindGate
	}
	if rollingOut(ready) {
		w.say("Environment %s is rolling out: %s.", name, rolloutText(last, ready))
		return KindRollingOut
	}
	switch ready.Reason {
	case deployv1.ReasonAutoDeployOff:
		w.say("Auto-deploy is off for Environment %s (spec.autoDeploy is false): new builds are recorded, not deployed.", name)
		if b := st.LatestBuild; b != nil {
			w.say("The latest build is %d.", b.Number)
		}
		if st.DeployedImage != "" {
			w.say("The service keeps running %s.", describe(st.DeployedImage, st.DeployedBuild))
		}
		w.say("Turn spec.autoDeploy on to deploy builds, or pin one with %s.", w.hint("pin", "<image|build>"))
		return KindAutoDeployOff
	case deployv1.ReasonWaitingForBuild:
		w.say("Environment %s waits for its first build: %s.", name, trimDot(ready.Message))
		return KindWaiting
	case deployv1.ReasonNewerBuildRunning:
		w.say("Environment %s does not deploy its latest build: %s.", name, trimDot(ready.Message))
		return KindNewerRunning
	}
	if ready.Status == metav1.ConditionTrue {
		w.say("Environment %s is up to date: %s.", name, trimDot(ready.Message))
		if last != nil && last.FinishedAt != nil && last.Result == deployv1.ResultCompleted {
			w.say("Its last rollout (trigger %s) completed at %s.", last.Trigger, clock(last.FinishedAt.Time))
		}
		if !env.Spec.AutoDeploy {
			w.say("Auto-deploy is off: new builds are recorded, not deployed.")
		}
		return KindDeployed
	}
	w.say("Environment %s is not ready (%s): %s.", name, ready.Reason, trimDot(ready.Message))
	if ready.Reason == deployv1.ReasonECSUnavailable {
		w.say("The controller retries with backoff.")
	}
	return KindNotReady
}

// gateToo mentions a build waiting at a gate while the rollout waits at a pause hook.
func (w *writer) gateToo() {
	if g := w.env.Status.Gate; g != nil {
		w.say("Besides, %s waits (%s): %s.", gateBuild(g), g.Reason, trimDot(g.Message))
		if g.Reason == deployv1.ReasonAwaitingApproval && g.Build != nil {
			w.say("Approve that build with %s.", w.hint("approve", fmt.Sprintf("--build %d", g.Build.Number)))
		}
	}
}

func (w *writer) gate(name string, g *deployv1.Gate) {
	what := gateBuild(g)
	msg := trimDot(g.Message)
	until := ""
	if g.Until != nil {
		until = " until " + clock(g.Until.Time)
		if d := g.Until.Sub(w.now); d > 0 {
			until += " (in " + roundDuration(d) + ")"
		}
	}
	switch g.Reason {
	case deployv1.ReasonWaitingForUpstream:
		w.say("Environment %s waits for its upstream: %s is not deployed until it completed its rollout upstream (%s).", name, what, msg)
		w.say("A build that failed upstream never comes here; the newest build that qualifies wins.")
	case deployv1.ReasonNotPromoted:
		w.say("Environment %s does not deploy %s: it failed or was replaced upstream, so it is never promoted (%s).", name, what, msg)
		w.say("The next build that completes upstream is deployed; pin an image to deploy something else now.")
	case deployv1.ReasonSoaking:
		w.say("Environment %s lets %s soak upstream%s before deploying it (%s).", name, what, until, msg)
		w.say("A failure upstream during the soak stops it.")
	case deployv1.ReasonAwaitingApproval:
		w.say("Environment %s requires approval: %s waits for it (%s).", name, what, msg)
		w.say("Approve it with %s; a newer build replaces it and needs its own approval.", w.hint("approve"))
	case deployv1.ReasonOutsideDeployWindow:
		w.say("Environment %s is outside its deploy windows: %s waits for the next opening%s (%s).", name, what, until, msg)
		w.say("A pin (%s) is never blocked by a window.", w.hint("pin", "<image|build>"))
	case deployv1.ReasonFrozen:
		end := until
		if end == "" {
			end = " until the freeze is lifted"
		}
		w.say("Environment %s is frozen: %s waits%s (%s).", name, what, end, msg)
		w.say("Lift the freeze (spec.freeze or the %s annotation) to deploy; a pin (%s) is never frozen.", deployv1.FreezeAnnotation, w.hint("pin", "<image|build>"))
	default:
		w.say("Environment %s holds %s at a gate (%s)%s: %s.", name, what, g.Reason, until, msg)
	}
}

func gateBuild(g *deployv1.Gate) string {
	if g.Build != nil {
		return fmt.Sprintf("build %d", g.Build.Number)
	}
	return "the latest build"
}

func rollingOut(ready *metav1.Condition) bool {
	return ready != nil && (ready.Reason == deployv1.ReasonRolloutInProgress || ready.Reason == deployv1.ReasonDeploying)
}

func rolloutText(last *deployv1.Deploy, ready *metav1.Condition) string {
	if ready.Reason == deployv1.ReasonDeploying || last == nil || last.Result != deployv1.ResultInProgress {
		return trimDot(lowerFirst(ready.Message))
	}
	s := describeDeploy(last) + " is rolling out"
	var parts []string
	if last.Strategy != "" {
		parts = append(parts, strings.ToLower(strings.ReplaceAll(last.Strategy, "_", "/"))+" deployment")
	}
	if last.Stage != "" {
		parts = append(parts, "stage "+last.Stage)
	}
	if last.TrafficWeight != "" {
		parts = append(parts, last.TrafficWeight+"% of production traffic on the new revision")
	}
	if len(parts) > 0 {
		s += " (" + strings.Join(parts, ", ") + ")"
	}
	if last.ServiceUpdatedAt != nil {
		s += ", started " + clock(last.ServiceUpdatedAt.Time)
	}
	return s
}

// Summary is the short reason of the list: the gate's when a build waits at one, else the
// awaited pause hook, else the Ready condition's reason and message.
func Summary(env *deployv1.Environment) string {
	st := &env.Status
	ready := meta.FindStatusCondition(st.Conditions, deployv1.ReadyCondition)
	switch {
	case env.Spec.Pinned() && ready != nil && ready.Status == metav1.ConditionTrue:
		return short("Pinned: " + env.Spec.PinText())
	case st.Gate != nil && (ready == nil || ready.Reason != deployv1.ReasonRolloutFailed):
		return short(st.Gate.Reason + ": " + st.Gate.Message)
	case ready == nil:
		return "NotReconciled"
	}
	if ready.Message == "" {
		return ready.Reason
	}
	return short(ready.Reason + ": " + ready.Message)
}

const summaryMax = 90

func short(s string) string {
	s = trimDot(s)
	if utf8.RuneCountInString(s) <= summaryMax {
		return s
	}
	r := []rune(s)
	return string(r[:summaryMax-1]) + "…"
}

func sameBuildAsDeployed(st *deployv1.EnvironmentStatus) bool {
	return st.LatestBuild != nil && st.DeployedBuild != nil && st.LatestBuild.ID == st.DeployedBuild.ID
}

func describeDeploy(d *deployv1.Deploy) string {
	if d == nil {
		return "the newest deploy"
	}
	return describe(d.Image, d.Build)
}

func describe(image string, b *deployv1.BuildRef) string {
	if b != nil {
		return fmt.Sprintf("build %d (%s)", b.Number, image)
	}
	return image
}

func clock(t time.Time) string {
	return t.UTC().Format("2006-01-02 15:04 MST")
}

func roundDuration(d time.Duration) string {
	if d >= time.Hour {
		return d.Round(time.Minute).String()
	}
	return d.Round(time.Second).String()
}

func trimDot(s string) string { return strings.TrimRight(strings.TrimSpace(s), ".") }

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	r, n := utf8.DecodeRuneInString(s)
	// Keep acronyms and names (ECS, Environment names) as they are.
	if n < len(s) {
		if r2, _ := utf8.DecodeRuneInString(s[n:]); r2 >= 'A' && r2 <= 'Z' {
			return s
		}
	}
	return strings.ToLower(string(r)) + s[n:]
}
