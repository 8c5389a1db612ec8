package app_test

import (
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
)

// gateMessage returns the message of an Environment's status.gate ("" for none).
func gateMessage(e *deployv1.Environment) string {
	if e == nil || e.Status.Gate == nil {
		return ""
	}
	return e.Status.Gate.Message
}

// TestNotificationOfGates: a webhook Notification hears, once each, a build waiting for
// approval as AwaitingApproval and builds held by a freeze and outside a deploy window as Held,
// all from the status.gate the reconciler writes. When the reconciler rewrites a gate's message
// (the freeze's reason changes; the clock passes midnight in Berlin, so the window's opening
// is told without its date there) nothing is told again; once the gates let the builds through nothing
// about them is told again either.
func TestNotificationOfGates(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	// The manager's clock: noon in Berlin tomorrow, outside the window that opens at 09:00.
	wall := time.Now()
	y, m, d := wall.In(berlin).Date()
	var offset atomic.Int64
	offset.Store(int64(time.Date(y, m, d+1, 12, 0, 0, 0, berlin).Sub(wall)))
	clock := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	h := newHarness(t, withClock(clock))
	g := h.g
	for _, svc := range []string{"svc-approve", "svc-frozen", "svc-windowed"} {
		h.seedService("prod", svc, image("v1"))
	}
	h.createEnv("approve", func(e *deployv1.Environment) {
		e.Spec.ECS.Service, e.Spec.Approval = "svc-approve", deployv1.ApprovalRequired
	})
	h.createEnv("frozen", func(e *deployv1.Environment) {
		e.Spec.ECS.Service = "svc-frozen"
		e.Annotations = map[string]string{deployv1.FreezeAnnotation: "reason=incident 1"}
	})
	window := deployv1.DeployWindow{Schedule: "0 9 * * *", Duration: metav1.Duration{Duration: time.Hour}, TimeZone: "Europe/Berlin"}
	h.createEnv("windowed", func(e *deployv1.Environment) {
		e.Spec.ECS.Service, e.Spec.DeployWindows = "svc-windowed", []deployv1.DeployWindow{window}
	})
	ep := newWebhookAt(t, []byte(webhookKey), clock)
	h.webhookNotification(ep, deployv1.OutcomeAwaitingApproval, deployv1.OutcomeHeld)
	h.quickNotifications(5 * time.Second)
	h.startManager()

	b := newBuild(143)
	g.Expect(h.postSigned(b.body(), testKey, clock()).Code).To(Equal(http.StatusAccepted))
	g.Eventually(h.env("approve"), timeout, poll).Should(WithTransform(gateOf, Equal("AwaitingApproval/143")))
	g.Eventually(h.env("frozen"), timeout, poll).Should(WithTransform(gateOf, Equal("Frozen/143")))
	g.Eventually(h.env("windowed"), timeout, poll).Should(WithTransform(gateOf, Equal("OutsideDeployWindow/143")))
	told := func() map[string]int {
		out := map[string]int{}
		for _, r := range ep.requests() {
			out[r["environment"].(string)+" "+r["outcome"].(string)+" "+r["reason"].(string)]++
		}
		return out
	}
	want := map[string]int{
		"approve AwaitingApproval AwaitingApproval": 1,
		"frozen Held Frozen":                        1,
		"windowed Held OutsideDeployWindow":         1,
	}
	g.Eventually(told, timeout, poll).Should(Equal(want))
	for _, r := range ep.requests() {
		g.Expect(r["build"]).To(HaveKeyWithValue("number", BeNumerically("==", 143)))
		g.Expect(r["image"]).To(Equal(b.Image))
		switch r["environment"] {
		case "approve":
			g.Expect(r["message"]).To(ContainSubstring("autodeployctl approve approve -n " + h.ns))
		case "frozen":
			g.Expect(r["message"]).To(ContainSubstring("incident 1"))
		}
	}
	windowMsg := gateMessage(h.getEnv("windowed"))
	g.Expect(windowMsg).To(ContainSubstring(time.Date(y, m, d+2, 9, 0, 0, 0, berlin).Format("2006-01-02")), "the opening is on another day than now")
	g.Eventually(h.notification("hook"), timeout, poll).Should(WithTransform(func(n *deployv1.Notification) int {
		total := 0
		for _, e := range n.Status.Environments {
			total += len(e.Delivered)
		}
		return total
	}, Equal(3)))

	// The reconciler rewrites the messages of the freeze and the window: nothing is told again.
	h.annotate("frozen", map[string]string{deployv1.FreezeAnnotation: "reason=incident 2"})
	g.Eventually(h.env("frozen"), timeout, poll).Should(And(
		WithTransform(gateOf, Equal("Frozen/143")), WithTransform(gateMessage, ContainSubstring("incident 2"))))
	offset.Store(int64(time.Date(y, m, d+2, 0, 30, 0, 0, berlin).Sub(wall)))
	h.updateEnv("windowed", func(e *deployv1.Environment) {
		e.Spec.DeployWindows[0].Duration = metav1.Duration{Duration: 2 * time.Hour}
	})
	g.Eventually(h.env("windowed"), timeout, poll).Should(And(
		WithTransform(gateOf, Equal("OutsideDeployWindow/143")),
		WithTransform(gateMessage, And(Not(Equal(windowMsg)), ContainSubstring("until "+time.Date(y, m, d+2, 9, 0, 0, 0, berlin).Format("15:04 MST")+" (")))))
	h.touchStatus("approve")
	g.Consistently(told, "1s", poll).Should(Equal(want))

	// The gates let 143 through: nothing more about it is told.
	h.annotate("approve", map[string]string{deployv1.ApproveAnnotation: "143", deployv1.ApprovedByAnnotation: "alice@example.com"})
	h.annotate("frozen", map[string]string{deployv1.FreezeAnnotation: ""})
	for _, name := range []string{"approve", "frozen"} {
		g.Eventually(h.env(name), timeout, poll).Should(And(WithTransform(deployedNumber, Equal(int64(143))), WithTransform(gateOf, BeEmpty())))
	}
	g.Consistently(told, "1s", poll).Should(Equal(want))
	g.Expect(ep.malformed()).To(BeEmpty())
}
