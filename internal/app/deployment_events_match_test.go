package app_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/ecssim"
	"github.com/autodeploy-dev/autodeploy/internal/eventbridge"
)

// TestRolloutEndsFromECSEventWithOldFormatServiceARN: in an account that never opted into
// the long ARN format, ECS names the service arn:…:service/<name> in its events. Such an event
// still ends the rollout.
func TestRolloutEndsFromECSEventWithOldFormatServiceARN(t *testing.T) {
	q := &eventQueue{}
	h := newEventsHarness(t, q, ecssim.WithOldServiceARNs())
	g := h.g

	b := newBuild(31)
	g.Expect(h.post(b).Code).To(Equal(http.StatusAccepted))
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(rolloutResult, Equal(deployv1.ResultInProgress)))
	q.drain()
	g.Expect(h.sim.CompleteDeployment("prod", "shop-api")).To(Succeed())
	events := q.drain()
	g.Expect(events).To(HaveLen(1))
	var ev ecssim.DeploymentEvent
	g.Expect(json.Unmarshal(events[0], &ev)).To(Succeed())
	g.Expect(ev.Resources).To(Equal([]string{"arn:aws:ecs:us-east-1:123456789012:service/shop-api"}))

	r := h.postEvent("/v1/events", events[0], ecsEventKey)
	g.Expect(r.Code).To(Equal(http.StatusOK), r.Raw)
	g.Expect(r.Body["result"]).To(Equal(eventbridge.ResultRecorded), r.Raw)
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(rolloutResult, Equal(deployv1.ResultCompleted)))
	g.Expect(readyReason(h.getEnv("prod"))).To(Equal("True/" + deployv1.ReasonDeployed))
}

// TestUnmatchedECSEventIsRedeliveredOnlyForADeployInFlight: an ECS event no Environment
// rolls out gets a 503 (EventBridge delivers it again) only while a deploy to its service may
// still be recording it. A deploy that stalled before it reached the service is not in
// flight: the event is answered 200 no-match at once instead of being retried for a day.
func TestUnmatchedECSEventIsRedeliveredOnlyForADeployInFlight(t *testing.T) {
	h := newHarness(t, withoutPolling(), withSim(ecssim.WithRolloutDuration(time.Hour)))
	g := h.g
	keys := [][]byte{[]byte(ecsEventKey)}
	h.eventKeys.Store(&keys)
	h.seedService("prod", "shop-api", image("v1"))
	h.createEnv("prod", func(e *deployv1.Environment) { e.Spec.ECS.Container = "missing" })
	h.startManager()

	event := func() []byte {
		raw, err := json.Marshal(ecssim.DeploymentEvent{
			Version: "0", ID: "e-" + time.Now().Format("150405.000000"), DetailType: ecssim.DeploymentEventDetailType, Source: "aws.ecs",
			Account: "123456789012", Time: time.Now().UTC().Format(time.RFC3339), Region: "us-east-1",
			Resources: []string{"arn:aws:ecs:us-east-1:123456789012:service/prod/shop-api"},
			Detail: ecssim.DeploymentEventDetail{EventType: "INFO", EventName: ecssim.EventDeploymentCompleted,
				DeploymentID: "ecs-svc/4242424242", Reason: "ECS deployment ecs-svc/4242424242 completed."},
		})
		g.Expect(err).NotTo(HaveOccurred())
		return raw
	}

	// Stalled: the container does not exist.
	b := newBuild(41)
	g.Expect(h.post(b).Code).To(Equal(http.StatusAccepted))
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(readyReason, Equal("False/"+deployv1.ReasonContainerNotFound)))
	g.Expect(h.getEnv("prod").Status.PendingDeploy).NotTo(BeNil())
	g.Expect(h.getEnv("prod").Status.PendingDeploy.Result).To(Equal(deployv1.ResultStalled))
	r := h.postEvent("/v1/events", event(), ecsEventKey)
	g.Expect(r.Code).To(Equal(http.StatusOK), r.Raw)
	g.Expect(r.Body["result"]).To(Equal(eventbridge.ResultNoMatch), r.Raw)

	// In flight: the deploy is retried (the container fixed) and UpdateService keeps failing.
	h.sim.InjectFault("UpdateService", ecssim.Fault{Status: 503, Code: "ServiceUnavailableException"})
	h.updateEnv("prod", func(e *deployv1.Environment) { e.Spec.ECS.Container = "web" })
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(readyReason, Equal("False/"+deployv1.ReasonECSUnavailable)))
	r = h.postEvent("/v1/events", event(), ecsEventKey)
	g.Expect(r.Code).To(Equal(http.StatusServiceUnavailable), r.Raw)
	g.Expect(strings.ToLower(r.Raw)).To(ContainSubstring("still being recorded"))
	h.sim.ClearFaults()
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(deployedImage, Equal(b.Image)))
}
