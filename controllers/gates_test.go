package controllers

import (
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
)

// gateNow is a Saturday, 10:00 UTC.
var gateNow = time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)

func gateBuild(n int64) *deployv1.Build {
	return &deployv1.Build{Application: "shop-api", Source: deployv1.SourceManifest, ID: fmt.Sprintf("shop-api:%d", n), Number: n,
		Image: fmt.Sprintf("%s:b%d", decideRepo, n), Branch: "main", ReceivedAt: metav1.NewTime(gateNow.Add(-time.Hour))}
}

// upstreamDeploy is a deploy of build n on the upstream that started at start and ended with
// result at end (end zero: still in progress).
func upstreamDeploy(n int64, result string, start, end time.Time) deployv1.Deploy {
	b := gateBuild(n)
	d := deployv1.Deploy{Image: b.Image, Build: b.Ref(), Trigger: deployv1.TriggerBuild, Result: result,
		StartedAt: metav1.NewTime(start), DeploymentID: fmt.Sprintf("ecs-svc/%d", n)}
	su := metav1.NewTime(start)
	d.ServiceUpdatedAt = &su
	if !end.IsZero() {
		e := metav1.NewTime(end)
		d.FinishedAt = &e
	}
	return d
}

// staging is the upstream with history (oldest first).
func staging(history ...deployv1.Deploy) *deployv1.Environment {
	up := &deployv1.Environment{
		ObjectMeta: metav1.ObjectMeta{Name: "shop-api-staging", Namespace: "shop"},
		Spec:       deployv1.EnvironmentSpec{Application: "shop-api", Branch: "main", AutoDeploy: true},
	}
	for _, d := range history {
		up.Status.RecordDeploy(d)
		up.Status.History[0].Result, up.Status.History[0].FinishedAt = d.Result, d.FinishedAt
		if d.Result == deployv1.ResultCompleted || d.Result == deployv1.ResultInProgress {
			up.Status.DeployedImage, up.Status.DeployedBuild = d.Image, d.Build
		}
	}
	return up
}

// prodRunning is a downstream Environment running build deployed, with latest recorded.
func prodRunning(deployed, latest int64, opts ...func(*deployv1.Environment)) *deployv1.Environment {
	e := &deployv1.Environment{
		ObjectMeta: metav1.ObjectMeta{Name: "shop-api-prod", Namespace: "shop"},
		Spec: deployv1.EnvironmentSpec{Application: "shop-api", Branch: "main", AutoDeploy: true,
			ECS: deployv1.ECSTarget{Region: "us-east-1", Cluster: "prod", Service: "shop-api"}},
	}
	if deployed > 0 {
		d := upstreamDeploy(deployed, deployv1.ResultCompleted, gateNow.Add(-48*time.Hour), gateNow.Add(-47*time.Hour))
		e.Status.RecordDeploy(d)
		e.Status.History[0].Result = deployv1.ResultCompleted
		e.Status.DeployedImage, e.Status.DeployedBuild = d.Image, d.Build
		e.Status.Target = e.Spec.ECS.DeepCopy()
	}
	if latest > 0 {
		e.Status.LatestBuild = gateBuild(latest)
	}
	for _, o := range opts {
		o(e)
	}
	return e
}

func promoted(soak time.Duration) func(*deployv1.Environment) {
	return func(e *deployv1.Environment) {
		e.Spec.Promotion = &deployv1.Promotion{Upstream: "shop-api-staging"}
		if soak > 0 {
			e.Spec.Promotion.SoakTime = &metav1.Duration{Duration: soak}
		}
	}
}

// decideGated records the gates' answer on e, as the reconciler does, and decides.
func decideGated(e *deployv1.Environment, gr GateResult) Desired {
	e.Status.Gate, e.Status.PromotedBuild = gr.Gate, gr.Promoted
	return Decide(e)
}

func buildNumber(b *deployv1.Build) int64 {
	if b == nil {
		return 0
	}
	return b.Number
}

func TestPromotionGate(t *testing.T) {
	h := time.Hour
	m := time.Minute
	cases := []struct {
		name     string
		env      *deployv1.Environment
		upstream *deployv1.Environment
		// promoted is the build promoted (0: none); deploys the build Decide deploys (0: none).
		promoted, deploys int64
		reason, message   string
		wake              time.Time
	}{
		{
			name: "only what completed upstream deploys: 143 deploys, 145 waits",
			env:  prodRunning(140, 145, promoted(0)),
			upstream: staging(upstreamDeploy(143, deployv1.ResultCompleted, gateNow.Add(-2*h), gateNow.Add(-2*h+5*m)),
				upstreamDeploy(145, deployv1.ResultInProgress, gateNow.Add(-m), time.Time{})),
			promoted: 143, deploys: 143,
			reason: deployv1.ReasonWaitingForUpstream, message: "Waiting for shop-api-staging to complete build 145",
		},
		{
			name:     "nothing completed upstream: nothing deploys",
			env:      prodRunning(140, 145, promoted(0)),
			upstream: staging(upstreamDeploy(145, deployv1.ResultInProgress, gateNow.Add(-m), time.Time{})),
			reason:   deployv1.ReasonWaitingForUpstream, message: "Waiting for shop-api-staging to complete build 145",
		},
		{
			name: "a build that failed upstream never reaches downstream",
			env:  prodRunning(143, 145, promoted(0)),
			upstream: staging(upstreamDeploy(143, deployv1.ResultCompleted, gateNow.Add(-2*h), gateNow.Add(-2*h+5*m)),
				upstreamDeploy(145, deployv1.ResultFailed, gateNow.Add(-m), gateNow)),
			promoted: 143,
			reason:   deployv1.ReasonNotPromoted, message: "Build 145 failed on shop-api-staging",
		},
		{
			name:     "the newest build that completed wins",
			env:      prodRunning(140, 145, promoted(0)),
			upstream: staging(upstreamDeploy(143, deployv1.ResultCompleted, gateNow.Add(-2*h), gateNow.Add(-2*h+5*m)), upstreamDeploy(145, deployv1.ResultCompleted, gateNow.Add(-h), gateNow.Add(-h+5*m))),
			promoted: 145, deploys: 145,
		},
		{
			name:     "soaking: the build waits until its soak ends",
			env:      prodRunning(140, 145, promoted(30*m)),
			upstream: staging(upstreamDeploy(143, deployv1.ResultCompleted, gateNow.Add(-5*h), gateNow.Add(-5*h+5*m)), upstreamDeploy(145, deployv1.ResultCompleted, gateNow.Add(-15*m), gateNow.Add(-10*m))),
			promoted: 143, deploys: 143,
			reason: deployv1.ReasonSoaking, message: "Soaking until 10:20 UTC: build 145 completed on shop-api-staging",
			wake: gateNow.Add(20 * m),
		},
		{
			name:     "a build replaced upstream before its soak ended does not qualify",
			env:      prodRunning(140, 145, promoted(30*m)),
			upstream: staging(upstreamDeploy(143, deployv1.ResultCompleted, gateNow.Add(-20*m), gateNow.Add(-19*m)), upstreamDeploy(145, deployv1.ResultInProgress, gateNow.Add(-5*m), time.Time{})),
			reason:   deployv1.ReasonWaitingForUpstream, message: "Waiting for shop-api-staging to complete build 145",
		},
		{
			name:     "soaked: the build deploys",
			env:      prodRunning(143, 145, promoted(30*m)),
			upstream: staging(upstreamDeploy(145, deployv1.ResultCompleted, gateNow.Add(-h), gateNow.Add(-55*m))),
			promoted: 145, deploys: 145,
		},
		{
			name: "a pin passes a promotion",
			env: prodRunning(143, 145, promoted(0), func(e *deployv1.Environment) {
				e.Spec.PinnedImage = gateBuild(120).Image
			}),
			upstream: staging(upstreamDeploy(145, deployv1.ResultInProgress, gateNow.Add(-m), time.Time{})),
			deploys:  -1, // the pin, which is no known build; nothing waits while it holds
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			gr := EvaluateGates(tc.env, tc.upstream, gateNow)
			g.Expect(gr.Invalid).To(BeNil())
			g.Expect(buildNumber(gr.Promoted)).To(Equal(tc.promoted))
			if tc.reason == "" {
				g.Expect(gr.Gate).To(BeNil())
			} else {
				g.Expect(gr.Gate).NotTo(BeNil())
				g.Expect(gr.Gate.Reason).To(Equal(tc.reason))
				g.Expect(gr.Gate.Message).To(ContainSubstring(tc.message))
				g.Expect(gr.Gate.Build.Number).To(Equal(int64(145)))
			}
			g.Expect(gr.Wake).To(Equal(tc.wake))
			d := decideGated(tc.env, gr)
			switch tc.deploys {
			case 0:
				g.Expect(d.Action).To(Equal(ActionNone), "nothing that did not qualify deploys")
			case -1:
				g.Expect(d.Action).To(Equal(ActionDeploy))
				g.Expect(d.Trigger).To(Equal(deployv1.TriggerPin))
			default:
				g.Expect(d.Action).To(Equal(ActionDeploy))
				g.Expect(d.Build.Number).To(Equal(tc.deploys))
				g.Expect(d.Image).To(Equal(gateBuild(tc.deploys).Image))
			}
		})
	}
}

func TestPromotionInvalid(t *testing.T) {
	g := NewWithT(t)
	up := staging(upstreamDeploy(143, deployv1.ResultCompleted, gateNow.Add(-time.Hour), gateNow))

	gr := EvaluateGates(prodRunning(140, 145, promoted(0)), nil, gateNow)
	g.Expect(gr.Invalid).NotTo(BeNil())
	g.Expect(gr.Invalid.Reason).To(Equal(deployv1.ReasonInvalidPromotion))
	g.Expect(gr.Invalid.Message).To(ContainSubstring("Environment shop-api-staging, which does not exist in namespace shop"))

	self := prodRunning(140, 145, func(e *deployv1.Environment) { e.Spec.Promotion = &deployv1.Promotion{Upstream: e.Name} })
	gr = EvaluateGates(self, self, gateNow)
	g.Expect(gr.Invalid).NotTo(BeNil())
	g.Expect(gr.Invalid.Message).To(ContainSubstring("names this Environment itself"))

	other := up.DeepCopy()
	other.Spec.Application = "billing"
	gr = EvaluateGates(prodRunning(140, 145, promoted(0)), other, gateNow)
	g.Expect(gr.Invalid).NotTo(BeNil())
	g.Expect(gr.Invalid.Message).To(ContainSubstring("deploys application billing, not shop-api"))

	// A pin goes through a promotion that cannot be applied.
	pinned := prodRunning(140, 145, promoted(0), func(e *deployv1.Environment) { e.Spec.PinnedImage = gateBuild(120).Image })
	g.Expect(EvaluateGates(pinned, nil, gateNow).Invalid).To(BeNil())
}

func TestApprovalGate(t *testing.T) {
	approve := func(v string) func(*deployv1.Environment) {
		return func(e *deployv1.Environment) {
			e.Spec.Approval = deployv1.ApprovalRequired
			if v != "" {
				e.Annotations = map[string]string{deployv1.ApproveAnnotation: v}
			}
		}
	}
	cases := []struct {
		name    string
		env     *deployv1.Environment
		waits   bool
		deploys bool
	}{
		{name: "not approved: waits", env: prodRunning(143, 145, approve("")), waits: true},
		{name: "approved for another build: waits", env: prodRunning(143, 145, approve("144")), waits: true},
		{name: "an approval of the build it replaced does not carry over", env: prodRunning(143, 145, approve("143")), waits: true},
		{name: "approved: deploys", env: prodRunning(143, 145, approve("145")), deploys: true},
		{name: "nothing new: no gate", env: prodRunning(145, 145, approve(""))},
		{name: "a pin needs no approval", env: prodRunning(143, 145, approve(""), withPin(gateBuild(120).Image)), deploys: true},
		{name: "a pending deploy is finished", env: prodRunning(143, 145, approve(""), func(e *deployv1.Environment) {
			e.Status.PendingDeploy = &deployv1.Deploy{Image: gateBuild(145).Image, Build: gateBuild(145).Ref(), Trigger: deployv1.TriggerBuild, StartedAt: metav1.NewTime(gateNow)}
		}), deploys: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			gr := EvaluateGates(tc.env, nil, gateNow)
			g.Expect(gr.Invalid).To(BeNil())
			d := decideGated(tc.env, gr)
			if tc.waits {
				g.Expect(gr.Gate).NotTo(BeNil())
				g.Expect(gr.Gate.Reason).To(Equal(deployv1.ReasonAwaitingApproval))
				g.Expect(gr.Gate.Build.Number).To(Equal(int64(145)))
				g.Expect(gr.Gate.Message).To(ContainSubstring("Build 145 awaits approval: autodeployctl approve shop-api-prod -n shop"))
				g.Expect(d.Action).To(Equal(ActionNone))
				g.Expect(d.Reason).To(Equal(deployv1.ReasonAwaitingApproval))
				g.Expect(d.Image).To(Equal(gateBuild(143).Image), "what runs stays")
				return
			}
			g.Expect(gr.Gate).To(BeNil())
			if tc.deploys {
				g.Expect(d.Action).To(Equal(ActionDeploy))
			} else {
				g.Expect(d.Action).To(Equal(ActionNone))
			}
		})
	}
}

func TestApprovalOfManagedFields(t *testing.T) {
	g := NewWithT(t)
	at := metav1.NewTime(gateNow.Add(-time.Minute))
	e := prodRunning(143, 145)
	e.Annotations = map[string]string{deployv1.ApproveAnnotation: "145"}
	e.ManagedFields = []metav1.ManagedFieldsEntry{
		{Manager: "kubectl-edit", Operation: metav1.ManagedFieldsOperationUpdate, Time: &metav1.Time{Time: gateNow.Add(-time.Hour)},
			FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:spec":{"f:autoDeploy":{}}}`)}},
		{Manager: "kubectl-annotate", Operation: metav1.ManagedFieldsOperationUpdate, Time: &at,
			FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:metadata":{"f:annotations":{".":{},"f:deploy.autodeploy.dev/approve":{}}}}`)}},
	}
	a := approvalOf(e, 145, gateNow)
	g.Expect(a.Build).To(Equal(int64(145)))
	g.Expect(a.By).To(Equal("kubectl-annotate"))
	g.Expect(a.At.Time).To(BeTemporally("==", at.Time))

	e.Annotations[deployv1.ApprovedByAnnotation] = "alice@example.com"
	g.Expect(approvalOf(e, 145, gateNow).By).To(Equal("alice@example.com"))

	e.ManagedFields = nil
	a = approvalOf(e, 145, gateNow)
	g.Expect(a.At.Time).To(Equal(gateNow), "the time the controller saw it, when the API server does not tell")
}

func TestDeployWindowGate(t *testing.T) {
	weekdays := []deployv1.DeployWindow{{Schedule: "0 9 * * 1-5", Duration: metav1.Duration{Duration: 8 * time.Hour}, TimeZone: "Europe/Berlin"}}
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	monday9 := time.Date(2026, 11, 30, 9, 0, 0, 0, berlin)
	cases := []struct {
		name    string
		windows []deployv1.DeployWindow
		now     time.Time
		pin     bool
		until   time.Time
		invalid string
	}{
		{name: "outside every window: waits until the next opening", windows: weekdays, now: gateNow, until: monday9},
		{name: "inside a window: deploys", windows: weekdays, now: monday9.Add(time.Hour)},
		{name: "at the opening: deploys", windows: weekdays, now: monday9},
		{name: "at the close: waits for the next day", windows: weekdays, now: monday9.Add(8 * time.Hour), until: monday9.AddDate(0, 0, 1)},
		{name: "the earliest window of several", windows: append([]deployv1.DeployWindow{{Schedule: "30 12 * * 6", Duration: metav1.Duration{Duration: time.Hour}}}, weekdays...),
			now: gateNow, until: time.Date(2026, 11, 28, 12, 30, 0, 0, time.UTC)},
		{name: "a pin passes a closed window", windows: weekdays, now: gateNow, pin: true},
		{name: "invalid schedule", windows: []deployv1.DeployWindow{{Schedule: "0 25 * * *", Duration: metav1.Duration{Duration: time.Hour}}}, now: gateNow,
			invalid: `spec.deployWindows[0]: schedule "0 25 * * *" is not a cron expression`},
		{name: "invalid zone", windows: []deployv1.DeployWindow{{Schedule: "0 9 * * *", Duration: metav1.Duration{Duration: time.Hour}, TimeZone: "Mars/Olympus"}}, now: gateNow,
			invalid: `timeZone "Mars/Olympus" is not an IANA time zone`},
		{name: "an interval is no window", windows: []deployv1.DeployWindow{{Schedule: "@every 1h", Duration: metav1.Duration{Duration: time.Hour}}}, now: gateNow,
			invalid: "repeats at an interval"},
		{name: "no duration", windows: []deployv1.DeployWindow{{Schedule: "0 9 * * *"}}, now: gateNow, invalid: "duration 0s must be positive"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			e := prodRunning(143, 145, func(e *deployv1.Environment) { e.Spec.DeployWindows = tc.windows })
			if tc.pin {
				e.Spec.PinnedImage = gateBuild(120).Image
			}
			gr := EvaluateGates(e, nil, tc.now)
			if tc.invalid != "" {
				g.Expect(gr.Invalid).NotTo(BeNil())
				g.Expect(gr.Invalid.Reason).To(Equal(deployv1.ReasonInvalidDeployWindow))
				g.Expect(gr.Invalid.Message).To(ContainSubstring(tc.invalid))
				return
			}
			g.Expect(gr.Invalid).To(BeNil())
			d := decideGated(e, gr)
			if tc.until.IsZero() {
				g.Expect(gr.Gate).To(BeNil())
				g.Expect(gr.Wake.IsZero()).To(BeTrue())
				g.Expect(d.Action).To(Equal(ActionDeploy))
				return
			}
			g.Expect(gr.Gate).NotTo(BeNil())
			g.Expect(gr.Gate.Reason).To(Equal(deployv1.ReasonOutsideDeployWindow))
			g.Expect(gr.Gate.Until.Time).To(BeTemporally("==", tc.until))
			g.Expect(gr.Wake).To(BeTemporally("==", tc.until), "the reconcile comes back at the opening")
			g.Expect(gr.Gate.Message).To(ContainSubstring("build 145 waits until"))
			g.Expect(d.Action).To(Equal(ActionNone))
			g.Expect(d.Reason).To(Equal(deployv1.ReasonOutsideDeployWindow))
		})
	}

	// The message names the opening in the window's zone and in UTC.
	e := prodRunning(143, 145, func(e *deployv1.Environment) { e.Spec.DeployWindows = weekdays })
	NewWithT(t).Expect(EvaluateGates(e, nil, gateNow).Gate.Message).To(ContainSubstring("until 2026-11-30 09:00 CET (2026-11-30 08:00 UTC)"))
}

func TestFreezeGate(t *testing.T) {
	later := metav1.NewTime(gateNow.Add(2 * time.Hour))
	earlier := metav1.NewTime(gateNow.Add(-time.Hour))
	cases := []struct {
		name       string
		freeze     *deployv1.Freeze
		annotation *string
		pin        bool
		pending    bool
		until      time.Time
		frozen     bool
		message    string
		invalid    string
	}{
		{name: "spec.freeze until later", freeze: &deployv1.Freeze{Until: &later, Reason: "Black Friday"}, frozen: true, until: later.Time,
			message: "Frozen until 12:00 UTC (Black Friday): build 145 waits"},
		{name: "spec.freeze with no end", freeze: &deployv1.Freeze{Reason: "incident 42"}, frozen: true,
			message: "Frozen (incident 42): build 145 waits until spec.freeze is removed"},
		{name: "a freeze that ended", freeze: &deployv1.Freeze{Until: &earlier}},
		{name: "the annotation", annotation: ptrTo("until=2026-11-28T12:00:00Z; reason=release; v2 cut"), frozen: true, until: later.Time,
			message: "Frozen until 12:00 UTC (release; v2 cut)"},
		{name: "the annotation with no end", annotation: ptrTo("reason=incident"), frozen: true,
			message: "waits until the deploy.autodeploy.dev/freeze annotation is removed"},
		{name: "the later of two freezes", freeze: &deployv1.Freeze{Until: &later}, annotation: ptrTo("until=2026-11-28T11:00:00Z"), frozen: true, until: later.Time},
		{name: "an unreadable annotation", annotation: ptrTo("until=tomorrow"), invalid: "until=tomorrow is not an RFC 3339 time"},
		{name: "an unknown key", annotation: ptrTo("from=now"), invalid: `"from=now" is not until=<RFC 3339 time> or reason=<text>`},
		{name: "a pin passes a freeze", freeze: &deployv1.Freeze{Reason: "incident"}, pin: true},
		{name: "a pending deploy is finished", freeze: &deployv1.Freeze{Reason: "incident"}, pending: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			e := prodRunning(143, 145, func(e *deployv1.Environment) { e.Spec.Freeze = tc.freeze })
			if tc.annotation != nil {
				e.Annotations = map[string]string{deployv1.FreezeAnnotation: *tc.annotation}
			}
			if tc.pin {
				e.Spec.PinnedImage = gateBuild(120).Image
			}
			if tc.pending {
				e.Status.PendingDeploy = &deployv1.Deploy{Image: gateBuild(145).Image, Build: gateBuild(145).Ref(), Trigger: deployv1.TriggerBuild, StartedAt: metav1.NewTime(gateNow)}
			}
			gr := EvaluateGates(e, nil, gateNow)
			if tc.invalid != "" {
				g.Expect(gr.Invalid).NotTo(BeNil())
				g.Expect(gr.Invalid.Reason).To(Equal(deployv1.ReasonInvalidFreeze))
				g.Expect(gr.Invalid.Message).To(ContainSubstring(tc.invalid))
				return
			}
			d := decideGated(e, gr)
			if !tc.frozen {
				g.Expect(gr.Gate).To(BeNil())
				g.Expect(d.Action).To(Equal(ActionDeploy))
				if tc.pending {
					g.Expect(d.Resume).To(BeTrue())
				}
				return
			}
			g.Expect(gr.Gate.Reason).To(Equal(deployv1.ReasonFrozen))
			g.Expect(gr.Gate.Message).To(ContainSubstring(tc.message))
			g.Expect(gr.Wake).To(BeTemporally("==", tc.until))
			g.Expect(d.Action).To(Equal(ActionNone))
		})
	}
}

// A gate recorded for one build holds back that build only, and never a deploy already
// pending: one of another build is finished (it may have reached the service), a stalled one
// is withdrawn with no ECS call.
func TestRecordedGateAndPendingDeploys(t *testing.T) {
	g := NewWithT(t)
	frozen := &deployv1.Gate{Reason: deployv1.ReasonFrozen, Message: "Frozen", Build: gateBuild(145).Ref()}

	e := prodRunning(143, 145)
	e.Status.Gate = frozen
	e.Status.PendingDeploy = &deployv1.Deploy{Image: gateBuild(144).Image, Build: gateBuild(144).Ref(), Trigger: deployv1.TriggerBuild, StartedAt: metav1.NewTime(gateNow)}
	d := Decide(e)
	g.Expect(d.Action).To(Equal(ActionDeploy))
	g.Expect(d.Resume).To(BeTrue())
	g.Expect(d.Build.Number).To(Equal(int64(144)))

	e.Status.PendingDeploy.Result = deployv1.ResultStalled
	g.Expect(Decide(e).Action).To(Equal(ActionWithdraw))

	e.Status.PendingDeploy = nil
	g.Expect(Decide(e).Action).To(Equal(ActionNone))

	// A gate recorded for another build than the one wanted holds nothing back.
	e.Status.LatestBuild = gateBuild(146)
	g.Expect(Decide(e).Action).To(Equal(ActionDeploy))
}

func ptrTo[T any](v T) *T { return &v }
