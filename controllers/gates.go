package controllers

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
)

// GateResult is the answer of the gates of an Environment at one instant: what the reconciler
// records in status.gate and status.promotedBuild, for Decide (and every other reader) to read.
type GateResult struct {
	// Gate says why the build the rules want waits; nil when nothing waits.
	Gate *deployv1.Gate
	// Promoted is the newest build that qualified on the upstream (spec.promotion only).
	Promoted *deployv1.Build
	// Wake is when the answer changes by the clock alone (a soak's end, a window's opening, a
	// freeze's end); zero when only a change of an object changes it.
	Wake time.Time
	// Invalid is set when a gate's settings cannot be applied: the Environment may not deploy
	// anything but a pin until they are fixed.
	Invalid *GateError
}

// GateError says which gate setting cannot be applied and why.
type GateError struct {
	Reason, Message string
}

func (e *GateError) Error() string { return e.Message }

// blockingGate reports whether a gate with this reason keeps the build it names from being
// deployed. The promotion reasons name builds that did not qualify, which are never wanted.
func blockingGate(reason string) bool {
	switch reason {
	case deployv1.ReasonAwaitingApproval, deployv1.ReasonFrozen, deployv1.ReasonOutsideDeployWindow:
		return true
	}
	return false
}

// EvaluateGates answers the gates of env at now: promotion from upstream (nil when it does not
// exist), approval, freezes and deploy windows. It is pure: the reconciler reads upstream from
// its cache and records the answer in env's status. Gates hold back only a new deploy of a
// build: a pin, a deploy already pending and what already runs pass. The order is promotion
// (which build), approval (a person can act on it at once), freeze, deploy window.
func EvaluateGates(env *deployv1.Environment, upstream *deployv1.Environment, now time.Time) GateResult {
	var res GateResult
	spec := &env.Spec
	var waiting *deployv1.Gate
	if p := spec.Promotion; p != nil {
		if err := checkUpstream(env, upstream); err != nil {
			if !spec.Pinned() {
				res.Invalid = err
			}
			return res
		}
		var soakEnd time.Time
		res.Promoted, waiting, soakEnd = promote(env, upstream, now)
		res.Wake = soakEnd
	}
	if spec.Pinned() {
		return res
	}
	freeze, ferr := activeFreeze(env, now)
	windows, werr := parseWindows(spec.DeployWindows)
	if ferr != nil || werr != nil {
		res.Invalid = firstGateError(ferr, werr)
		return res
	}

	// Would a new deploy of a build start, with no gate in the way?
	probe := env.DeepCopy()
	probe.Status.Gate, probe.Status.PromotedBuild = nil, res.Promoted
	d := Decide(probe)
	if d.Action != ActionDeploy || d.Resume || d.Trigger == deployv1.TriggerPin {
		res.Gate = waiting
		return res
	}
	what := "The next deploy"
	if d.Build != nil {
		what = fmt.Sprintf("Build %d", d.Build.Number)
	}
	gate := func(reason, msg string, until *time.Time) *deployv1.Gate {
		g := &deployv1.Gate{Reason: reason, Message: msg, Build: d.Build}
		if until != nil {
			t := metav1.NewTime(*until)
			g.Until = &t
		}
		return g
	}
	switch {
	case spec.Approval == deployv1.ApprovalRequired && d.Build != nil && env.Annotations[deployv1.ApproveAnnotation] != strconv.FormatInt(d.Build.Number, 10):
		res.Gate = gate(deployv1.ReasonAwaitingApproval, fmt.Sprintf(
			"%s awaits approval: autodeployctl approve %s -n %s (or kubectl -n %s annotate environment %s %s=%d --overwrite)",
			what, env.Name, env.Namespace, env.Namespace, env.Name, deployv1.ApproveAnnotation, d.Build.Number), nil)
	case freeze != nil:
		msg := "Frozen"
		if freeze.until != nil {
			msg += " until " + clock(*freeze.until, time.UTC, now)
			res.Wake = earliest(res.Wake, *freeze.until)
		}
		if freeze.reason != "" {
			msg += " (" + freeze.reason + ")"
		}
		msg += ": " + lowerFirst(what) + " waits"
		if freeze.until == nil {
			msg += " until " + freeze.source
		}
		res.Gate = gate(deployv1.ReasonFrozen, msg, freeze.until)
	case len(windows) > 0:
		open, next, nextWin := windowsAt(windows, now)
		if open {
			break
		}
		if next.IsZero() {
			res.Gate = gate(deployv1.ReasonOutsideDeployWindow, what+" waits: no deploy window of spec.deployWindows ever opens again", nil)
			break
		}
		res.Wake = earliest(res.Wake, next)
		res.Gate = gate(deployv1.ReasonOutsideDeployWindow, fmt.Sprintf("Outside every deploy window: %s waits until %s, when the window %q opens",
			lowerFirst(what), clock(next, nextWin.loc, now), nextWin.spec), &next)
	}
	if res.Gate == nil {
		res.Gate = waiting
	}
	return res
}

func lowerFirst(s string) string { return strings.ToLower(s[:1]) + s[1:] }

func firstGateError(errs ...error) *GateError {
	for _, err := range errs {
		var ge *GateError
		if errors.As(err, &ge) {
			return ge
		}
	}
	return nil
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// clock formats t for a status message: the time of day when t is on now's day, else with
// the date, in loc (and in UTC too when loc is another zone).
func clock(t time.Time, loc *time.Location, now time.Time) string {
	f := func(t time.Time) string {
		layout := "15:04"
		if t.Second() != 0 {
			layout = "15:04:05"
		}
		if y, m, d := t.Date(); y != now.In(t.Location()).Year() || m != now.In(t.Location()).Month() || d != now.In(t.Location()).Day() {
			layout = "2006-01-02 " + layout
		}
		return t.Format(layout + " MST")
	}
	s := f(t.In(loc))
	if loc != time.UTC {
		s += " (" + f(t.UTC()) + ")"
	}
	return s
}

// checkUpstream tells why upstream cannot be the upstream of env.
func checkUpstream(env, upstream *deployv1.Environment) *GateError {
	name := env.Spec.Promotion.Upstream
	switch {
	case name == env.Name:
		return &GateError{deployv1.ReasonInvalidPromotion, "spec.promotion.upstream names this Environment itself: name the Environment builds must complete on first"}
	case upstream == nil:
		return &GateError{deployv1.ReasonInvalidPromotion, fmt.Sprintf(
			"spec.promotion.upstream names Environment %s, which does not exist in namespace %s: create it or name another; nothing is deployed until then", name, env.Namespace)}
	case upstream.Spec.Application != env.Spec.Application:
		return &GateError{deployv1.ReasonInvalidPromotion, fmt.Sprintf(
			"spec.promotion.upstream names Environment %s, which deploys application %s, not %s: a build is promoted only between Environments of one application",
			name, upstream.Spec.Application, env.Spec.Application)}
	}
	return nil
}

// upstreamBuild is what the upstream's history tells of one build.
type upstreamBuild struct {
	deploy *deployv1.Deploy
	// stayedUntil is when another deploy replaced the build on the upstream; zero while it
	// still runs there.
	stayedUntil time.Time
}

// upstreamBuilds returns, per build id, the newest deploy of each build of env's application
// in upstream's history, and when the next deploy replaced it.
func upstreamBuilds(env, upstream *deployv1.Environment) map[string]upstreamBuild {
	out := map[string]upstreamBuild{}
	hist := upstream.Status.History
	for i := range hist {
		d := &hist[i]
		if d.Build == nil || (d.Build.Application != "" && d.Build.Application != env.Spec.Application) {
			continue
		}
		if _, seen := out[d.Build.ID]; seen {
			continue
		}
		ub := upstreamBuild{deploy: d}
		if i > 0 {
			next := &hist[i-1]
			ub.stayedUntil = next.StartedAt.Time
			if next.ServiceUpdatedAt != nil {
				ub.stayedUntil = next.ServiceUpdatedAt.Time
			}
			if next.RolledBack && deployv1.SameBuild(upstream.Status.DeployedBuild, d.Build) && i == 1 {
				// ECS put this build back after the next deploy failed: it still runs.
				ub.stayedUntil = time.Time{}
			}
		}
		out[d.Build.ID] = ub
	}
	return out
}

// promotion states of a build on the upstream.
type promotionState int

const (
	promoNotYet promotionState = iota // not deployed there, or its rollout runs
	promoFailed
	promoReplaced // replaced there before it completed or soaked
	promoSoaking
	promoQualified
)

// judge says where build id stands on the upstream, and when its soak ends.
func judge(builds map[string]upstreamBuild, id string, soak time.Duration, now time.Time) (promotionState, time.Time, *deployv1.Deploy) {
	ub, ok := builds[id]
	if !ok {
		return promoNotYet, time.Time{}, nil
	}
	d := ub.deploy
	switch d.Result {
	case deployv1.ResultFailed:
		return promoFailed, time.Time{}, d
	case deployv1.ResultSuperseded:
		return promoReplaced, time.Time{}, d
	case deployv1.ResultCompleted:
	default:
		return promoNotYet, time.Time{}, d
	}
	if soak <= 0 {
		return promoQualified, time.Time{}, d
	}
	done := d.StartedAt.Time
	if d.FinishedAt != nil {
		done = d.FinishedAt.Time
	}
	end := done.Add(soak)
	switch {
	case !ub.stayedUntil.IsZero() && ub.stayedUntil.Before(end):
		return promoReplaced, end, d
	case !ub.stayedUntil.IsZero(), !now.Before(end):
		return promoQualified, end, d
	}
	return promoSoaking, end, d
}

// promote returns the newest build of env's application that qualified on upstream, the gate
// of a newer build of env that did not (yet), and when a soak under way ends.
func promote(env, upstream *deployv1.Environment, now time.Time) (*deployv1.Build, *deployv1.Gate, time.Time) {
	var soak time.Duration
	if s := env.Spec.Promotion.SoakTime; s != nil {
		soak = s.Duration
	}
	builds := upstreamBuilds(env, upstream)
	var best *deployv1.Deploy
	var wake time.Time
	for id := range builds {
		state, end, d := judge(builds, id, soak, now)
		switch state {
		case promoQualified:
			if best == nil || d.Build.Number > best.Build.Number {
				best = d
			}
		case promoSoaking:
			wake = earliest(wake, end)
		}
	}
	var promoted *deployv1.Build
	if best != nil {
		promoted = buildOfDeploy(env, upstream, best)
	}
	// A newer build recorded here waits for the upstream.
	latest := env.Status.LatestBuild
	if !env.Spec.AutoDeploy || !env.Spec.Accepts(latest) || (promoted != nil && !newerBuild(latest.Ref(), promoted.Ref())) {
		return promoted, nil, wake
	}
	up := upstream.Name
	g := &deployv1.Gate{Reason: deployv1.ReasonWaitingForUpstream, Build: latest.Ref()}
	state, end, d := judge(builds, latest.ID, soak, now)
	switch state {
	case promoNotYet:
		g.Message = fmt.Sprintf("Waiting for %s to complete build %d", up, latest.Number)
	case promoFailed:
		g.Reason = deployv1.ReasonNotPromoted
		g.Message = fmt.Sprintf("Build %d failed on %s (%s): it is not promoted; waiting for a newer build to complete there", latest.Number, up, d.Reason)
	case promoReplaced:
		g.Reason = deployv1.ReasonNotPromoted
		g.Message = fmt.Sprintf("Build %d was replaced on %s before it completed and soaked there: it is not promoted; waiting for a newer build to complete there", latest.Number, up)
	case promoSoaking:
		t := metav1.NewTime(end)
		g.Reason, g.Until = deployv1.ReasonSoaking, &t
		g.Message = fmt.Sprintf("Soaking until %s: build %d completed on %s and must run there for %s without a failure", clock(end, time.UTC, now), latest.Number, up, soak)
	default:
		// Qualified, yet not newer than the promoted build: not reached.
		return promoted, nil, wake
	}
	return promoted, g, wake
}

// newerBuild reports whether a is a newer build of the same application than b.
func newerBuild(a, b *deployv1.BuildRef) bool {
	return deployv1.Comparable(a, b) && !deployv1.SameBuild(a, b) && a.Number > b.Number
}

// buildOfDeploy returns the build an upstream deploy deployed, with its images: the whole
// build when the upstream's or env's latest build is it, else as the deploy recorded it.
func buildOfDeploy(env, upstream *deployv1.Environment, d *deployv1.Deploy) *deployv1.Build {
	for _, b := range []*deployv1.Build{upstream.Status.LatestBuild, env.Status.LatestBuild} {
		if b != nil && deployv1.SameBuild(b.Ref(), d.Build) {
			return b.DeepCopy()
		}
	}
	b := &deployv1.Build{
		Application: d.Build.Application, Source: d.Build.Source, ID: d.Build.ID, Number: d.Build.Number,
		Image: d.Image, Branch: upstream.Spec.Branch, ReceivedAt: d.StartedAt,
	}
	if len(d.Images) > 0 {
		b.Images = make(map[string]string, len(d.Images))
		for k, v := range d.Images {
			b.Images[k] = v
		}
	}
	return b
}

// promotedAccepted reports whether the promoted build b is one of the application (and branch)
// spec follows; a build whose branch is not known is taken to be of the upstream's branch.
func promotedAccepted(spec *deployv1.EnvironmentSpec, b *deployv1.Build) bool {
	return b != nil && (b.Application == "" || b.Application == spec.Application) &&
		(spec.Branch == "" || b.Branch == "" || b.Branch == spec.Branch)
}

// freezeState is a freeze in force.
type freezeState struct {
	until  *time.Time
	reason string
	// source says what ends a freeze with no end.
	source string
}

// activeFreeze returns the freeze in force at now (spec.freeze or the freeze annotation; the
// one that ends last), or nil.
func activeFreeze(env *deployv1.Environment, now time.Time) (*freezeState, error) {
	var active []freezeState
	if f := env.Spec.Freeze; f != nil {
		fs := freezeState{reason: f.Reason, source: "spec.freeze is removed"}
		if f.Until != nil {
			u := f.Until.Time
			fs.until = &u
		}
		active = append(active, fs)
	}
	if v, ok := env.Annotations[deployv1.FreezeAnnotation]; ok {
		fs, err := parseFreeze(v)
		if err != nil {
			return nil, &GateError{deployv1.ReasonInvalidFreeze, fmt.Sprintf("Annotation %s=%q: %s; nothing but a pin is deployed until it is fixed or removed",
				deployv1.FreezeAnnotation, v, err.Error())}
		}
		fs.source = "the " + deployv1.FreezeAnnotation + " annotation is removed"
		active = append(active, *fs)
	}
	var out *freezeState
	for i := range active {
		f := &active[i]
		if f.until != nil && !now.Before(*f.until) {
			continue // ended
		}
		if out == nil || f.until == nil || (out.until != nil && f.until.After(*out.until)) {
			out = f
		}
	}
	return out, nil
}

// parseFreeze reads a value of the freeze annotation: "until=<RFC 3339 time>; reason=<text>",
// both parts optional (reason last: it may hold any text).
func parseFreeze(v string) (*freezeState, error) {
	fs := &freezeState{}
	rest := strings.TrimSpace(v)
	if i := strings.Index(rest, "reason="); i >= 0 {
		fs.reason = strings.TrimSpace(rest[i+len("reason="):])
		rest = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest[:i]), ";"))
	}
	for _, part := range strings.Split(rest, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		key, val, ok := strings.Cut(part, "=")
		if !ok || strings.TrimSpace(key) != "until" {
			return nil, fmt.Errorf("%q is not until=<RFC 3339 time> or reason=<text>", part)
		}
		t, err := time.Parse(time.RFC3339, strings.TrimSpace(val))
		if err != nil {
			return nil, fmt.Errorf("until=%s is not an RFC 3339 time such as 2026-12-24T18:00:00Z", strings.TrimSpace(val))
		}
		fs.until = &t
	}
	return fs, nil
}

// window is a parsed deploy window.
type window struct {
	spec     string
	schedule cron.Schedule
	duration time.Duration
	loc      *time.Location
}

var windowParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// parseWindows parses spec.deployWindows, telling which one is invalid and why.
func parseWindows(ws []deployv1.DeployWindow) ([]window, error) {
	out := make([]window, 0, len(ws))
	for i, w := range ws {
		bad := func(format string, args ...any) error {
			return &GateError{deployv1.ReasonInvalidDeployWindow, fmt.Sprintf("spec.deployWindows[%d]: ", i) + fmt.Sprintf(format, args...) +
				"; nothing but a pin is deployed until it is fixed"}
		}
		tz := w.TimeZone
		if tz == "" {
			tz = "UTC"
		}
		if tz == "Local" {
			return nil, bad("timeZone Local is the controller's zone, not a schedule's: name an IANA time zone such as Europe/Berlin")
		}
		loc, err := time.LoadLocation(tz)
		if err != nil {
			return nil, bad("timeZone %q is not an IANA time zone (for example Europe/Berlin or America/New_York)", w.TimeZone)
		}
		if strings.Contains(w.Schedule, "TZ=") {
			return nil, bad("schedule %q names a time zone: set it in timeZone instead", w.Schedule)
		}
		sched, err := windowParser.Parse(w.Schedule)
		if err != nil {
			return nil, bad("schedule %q is not a cron expression (minute hour day-of-month month day-of-week, for example \"0 9 * * 1-5\"): %s", w.Schedule, err.Error())
		}
		ss, ok := sched.(*cron.SpecSchedule)
		if !ok {
			return nil, bad("schedule %q repeats at an interval, not at times of day: use a cron expression such as \"0 9 * * 1-5\"", w.Schedule)
		}
		ss.Location = loc
		if w.Duration.Duration <= 0 {
			return nil, bad("duration %s must be positive (for example 8h)", w.Duration.Duration)
		}
		out = append(out, window{spec: w.Schedule, schedule: ss, duration: w.Duration.Duration, loc: loc})
	}
	return out, nil
}

// windowsAt reports whether a window is open at now; when none is, the next opening of any
// (zero when none ever opens) and its window.
func windowsAt(ws []window, now time.Time) (open bool, next time.Time, nextWin window) {
	for _, w := range ws {
		// The latest opening in (now-duration, now], if any, means the window is open.
		o := w.schedule.Next(now.Add(-w.duration))
		if !o.IsZero() && !o.After(now) {
			return true, time.Time{}, window{}
		}
		if !o.IsZero() && (next.IsZero() || o.Before(next)) {
			next, nextWin = o, w
		}
	}
	return false, next, nextWin
}

// approvalOf returns the approval of build on env: who set the approve annotation (the
// approved-by annotation, else the field manager of the annotation) and when (the time of
// that write, else now).
func approvalOf(env *deployv1.Environment, build int64, now time.Time) *deployv1.Approval {
	a := &deployv1.Approval{Build: build, By: env.Annotations[deployv1.ApprovedByAnnotation]}
	key := "f:" + deployv1.ApproveAnnotation
	for _, mf := range env.ManagedFields {
		if mf.FieldsV1 == nil || mf.Subresource != "" {
			continue
		}
		var fields struct {
			Metadata struct {
				Annotations map[string]json.RawMessage `json:"f:annotations"`
			} `json:"f:metadata"`
		}
		if json.Unmarshal(mf.FieldsV1.Raw, &fields) != nil {
			continue
		}
		if _, ok := fields.Metadata.Annotations[key]; !ok {
			continue
		}
		if mf.Time != nil && (a.At == nil || mf.Time.After(a.At.Time)) {
			t := *mf.Time
			a.At = &t
			if env.Annotations[deployv1.ApprovedByAnnotation] == "" {
				a.By = mf.Manager
			}
		} else if a.By == "" {
			a.By = mf.Manager
		}
	}
	if a.At == nil {
		t := metav1.NewTime(now)
		a.At = &t
	}
	return a
}
