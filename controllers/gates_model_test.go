package controllers

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
)

// The gate dimension of TestGatesAgainstTheModel, crossed with every state of the Decide model.
type mGate int

const (
	gateUnset           mGate = iota
	gateApprovalMissing       // approval required, the annotation names no build
	gateApprovalGiven         // approval required, the annotation names the wanted build
	gateFreeze                // spec.freeze in force
	gateFreezeOver            // spec.freeze that ended
	gateWindowClosed          // a deploy window, closed now
	gateWindowOpen            // a deploy window, open now
	gatePromotedDone          // promotion: the upstream completed the latest build
	gatePromotedRunning       // promotion: the upstream still rolls the latest build out
)

var mGateNow = time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC) // a Saturday

// withGate returns s's Environment with gate g, the upstream of a promotion, and the
// Environment with no gate that decides as the gate should when it lets everything pass.
func withGate(s mState, g mGate) (env, upstream, open *deployv1.Environment) {
	env = s.env()
	open = s.env()
	want, wantOK := s.rawWant()
	switch g {
	case gateApprovalMissing:
		env.Spec.Approval = deployv1.ApprovalRequired
	case gateApprovalGiven:
		env.Spec.Approval = deployv1.ApprovalRequired
		if env.Annotations == nil {
			env.Annotations = map[string]string{}
		}
		n := int64(10) // the build that runs elsewhere (a target change)
		if wantOK && want.build != nil {
			n = want.build.Number
		}
		env.Annotations[deployv1.ApproveAnnotation] = fmt.Sprint(n)
	case gateFreeze:
		until := metav1.NewTime(mGateNow.Add(time.Hour))
		env.Spec.Freeze = &deployv1.Freeze{Until: &until, Reason: "release"}
	case gateFreezeOver:
		until := metav1.NewTime(mGateNow.Add(-time.Hour))
		env.Spec.Freeze = &deployv1.Freeze{Until: &until}
	case gateWindowClosed:
		env.Spec.DeployWindows = []deployv1.DeployWindow{{Schedule: "0 9 * * 1-5", Duration: metav1.Duration{Duration: 8 * time.Hour}}}
	case gateWindowOpen:
		env.Spec.DeployWindows = []deployv1.DeployWindow{{Schedule: "0 9 * * 6", Duration: metav1.Duration{Duration: 8 * time.Hour}}}
	case gatePromotedDone, gatePromotedRunning:
		env.Spec.Promotion = &deployv1.Promotion{Upstream: "shop-api-staging"}
		upstream = &deployv1.Environment{
			ObjectMeta: metav1.ObjectMeta{Name: "shop-api-staging", Namespace: "shop"},
			Spec:       deployv1.EnvironmentSpec{Application: "shop-api", Branch: "main", AutoDeploy: true},
		}
		if b := env.Status.LatestBuild; b != nil && b.Application == "shop-api" {
			d := deployv1.Deploy{Image: b.Image, Build: b.Ref(), Trigger: deployv1.TriggerBuild, Result: deployv1.ResultInProgress, StartedAt: metav1.NewTime(mGateNow.Add(-time.Hour))}
			if g == gatePromotedDone {
				end := metav1.NewTime(mGateNow.Add(-time.Minute))
				d.Result, d.FinishedAt = deployv1.ResultCompleted, &end
			}
			upstream.Status.History = []deployv1.Deploy{d}
			upstream.Status.LatestBuild = b.DeepCopy()
		}
		// With no gate, the Environment that follows the upstream wants what completed there.
		if g == gatePromotedRunning {
			open.Status.LatestBuild = nil
		}
	}
	return env, upstream, open
}

// TestGatesAgainstTheModel crosses every state of the Decide model with promotion, approval,
// freeze and deploy-window gates, and checks what holds whatever the gate: a pin, a deploy
// pending and what runs pass every gate (no reverted pin, no lost deploy); a gate holds back
// only a new deploy of a build, which then is never deployed (a waiting build never
// deployed); when it lets a build pass, the decision is the one with no gate (no doubled
// deploy); and neither EvaluateGates nor Decide changes the Environment.
func TestGatesAgainstTheModel(t *testing.T) {
	failures, checked := 0, 0
	// Each state meets three gates drawn at random (with a fixed seed, so that a failure
	// repeats): every gate meets every kind of state many times over.
	rng := rand.New(rand.NewPCG(12, 34))
	for _, s := range allStates() {
		for range 3 {
			g := gateUnset + mGate(1+rng.IntN(int(gatePromotedRunning)))
			checked++
			env, upstream, open := withGate(s, g)
			fail := func(format string, args ...any) {
				t.Helper()
				if failures++; failures <= 20 {
					t.Errorf("%s gate=%d: %s", s, g, fmt.Sprintf(format, args...))
				}
			}
			before := env.DeepCopy()
			gr := EvaluateGates(env, upstream, mGateNow)
			if !equalEnv(env, before) {
				fail("EvaluateGates modified the Environment")
			}
			if gr.Invalid != nil {
				fail("invalid: %s", gr.Invalid.Message)
				continue
			}
			openGates := EvaluateGates(open, nil, mGateNow)
			open.Status.Gate, open.Status.PromotedBuild = openGates.Gate, openGates.Promoted
			if g == gatePromotedDone {
				// Open: the latest build, which completed upstream.
				open.Status.PromotedBuild = nil
			}
			free := Decide(open)
			env.Status.Gate, env.Status.PromotedBuild = gr.Gate, gr.Promoted
			got := Decide(env)

			blocks := gr.Gate != nil && blockingGate(gr.Gate.Reason)
			newDeploy := free.Action == ActionDeploy && !free.Resume && s.pin == pinNone
			var wantBlock bool
			switch g {
			case gateApprovalMissing:
				wantBlock = newDeploy && free.Build != nil
			case gateFreeze, gateWindowClosed:
				wantBlock = newDeploy
			}
			if blocks != wantBlock {
				fail("gate %+v holds back: %v, want %v (free decision %+v)", gr.Gate, blocks, wantBlock, free)
			}
			same := got.Action == free.Action && got.Image == free.Image && got.Trigger == free.Trigger && got.Force == free.Force && got.Resume == free.Resume
			switch {
			case s.pin == pinSet && !same:
				fail("a pin is decided otherwise behind a gate: %+v, with no gate %+v", got, free)
			case !blocks && !same:
				fail("a gate that lets everything pass changes the decision: %+v, with no gate %+v", got, free)
			case blocks:
				p := env.Status.PendingDeploy
				switch {
				case got.Action == ActionDeploy && (p == nil || !got.Resume || got.Image != p.Image):
					fail("deploys %s, which waits at %s", got.Image, gr.Gate.Reason)
				case p != nil && p.Result != deployv1.ResultStalled && got.Action != ActionDeploy:
					fail("a pending deploy is cut off by %s: %+v", gr.Gate.Reason, got)
				case p == nil && got.Action != ActionNone:
					fail("acts with nothing pending while a build waits: %+v", got)
				case p == nil && got.Reason != gr.Gate.Reason:
					fail("the decision's reason is %q, not the gate's %q", got.Reason, gr.Gate.Reason)
				}
			}
			if g == gatePromotedRunning && s.target == targetSame && got.Action == ActionDeploy && !got.Resume && got.Trigger != deployv1.TriggerPin &&
				s.latestBuild() != nil && got.Build != nil && got.Build.ID == s.latestBuild().ID {
				fail("deploys build %s before it completed upstream", got.Image)
			}
			settled := env.DeepCopy()
			setSettledConditions(settled, got)
			for _, typ := range []string{deployv1.ReadyCondition, deployv1.ReconcilingCondition, deployv1.StalledCondition} {
				if c := meta.FindStatusCondition(settled.Status.Conditions, typ); c == nil || c.Reason == "" || c.Message == "" {
					fail("condition %s without a reason or message: %+v", typ, c)
				}
			}
		}
	}
	t.Logf("%d states checked", checked)
	if failures > 20 {
		t.Errorf("... and %d more", failures-20)
	}
}
