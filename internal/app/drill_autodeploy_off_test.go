package app_test

import (
	"net/http"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
)

// Auto-deploy is turned off while the first deploy's UpdateService is in flight: the deploy
// is finished and recorded (the Environment says what the service runs).
func TestDrillAutoDeployOffMidDeployIsRecorded(t *testing.T) {
	h := newHarness(t)
	g := h.g
	h.seedService("prod", "shop-api", image("v1"))
	h.createEnv("prod", nil)
	h.sim.SetLatency("UpdateService", 700*time.Millisecond) // keeps UpdateService in flight
	h.startManager()
	b := newBuild(1)
	g.Expect(h.post(b).Code).To(Equal(http.StatusAccepted))
	g.Eventually(func() int { return h.sim.Calls("UpdateService") }, timeout, time.Millisecond).Should(BeNumerically(">=", 1))
	h.updateEnv("prod", func(e *deployv1.Environment) { e.Spec.AutoDeploy = false })
	g.Eventually(func() string { return h.webImage("prod", "shop-api") }, timeout, poll).Should(Equal(b.Image))
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(func(e *deployv1.Environment) bool {
		return e.Status.ObservedGeneration == e.Generation
	}, BeTrue()))
	// The service runs b; the status must say so (or the controller must undo it and say so).
	g.Eventually(h.env("prod"), timeout, poll).Should(And(
		WithTransform(deployedImage, Equal(h.webImage("prod", "shop-api"))),
		WithTransform(func(e *deployv1.Environment) *deployv1.Deploy { return e.Status.PendingDeploy }, BeNil())))
}

// Auto-deploy is turned off while the deploy of build 2 is in flight (build 1 deployed):
// build 2 is finished and stays; nothing is reverted.
func TestDrillAutoDeployOffMidDeployKeepsWhatIsDeployed(t *testing.T) {
	h := newHarness(t)
	g := h.g
	family := h.seedService("prod", "shop-api", image("v1"))
	h.createEnv("prod", nil)
	h.startManager()
	b1, b2 := newBuild(1), newBuild(2)
	g.Expect(h.post(b1).Code).To(Equal(http.StatusAccepted))
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(deployedImage, Equal(b1.Image)))
	h.sim.SetLatency("UpdateService", 700*time.Millisecond)
	before := h.sim.Calls("UpdateService")
	g.Expect(h.post(b2).Code).To(Equal(http.StatusAccepted))
	g.Eventually(func() int { return h.sim.Calls("UpdateService") }, timeout, time.Millisecond).Should(BeNumerically(">", before))
	h.updateEnv("prod", func(e *deployv1.Environment) { e.Spec.AutoDeploy = false })
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(func(e *deployv1.Environment) bool {
		return e.Status.ObservedGeneration == e.Generation && e.Status.PendingDeploy == nil
	}, BeTrue()))
	// Expected: b2, which reached the service, stays and is recorded; no revert.
	g.Expect(h.webImage("prod", "shop-api")).To(Equal(b2.Image))
	g.Expect(h.getEnv("prod").Status.DeployedImage).To(Equal(b2.Image))
	g.Expect(h.revisionImages(family)).To(Equal([]string{image("v1"), b1.Image, b2.Image}))
}
