package app_test

import (
	"net/http"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/controllers"
)

func TestEnvironmentsByStateMetric(t *testing.T) {
	h := newHarness(t)
	g := h.g
	h.seedService("prod", "shop-api", image("v1"))
	h.createEnv("deployed", nil)
	h.createEnv("missing", func(e *deployv1.Environment) { e.Spec.ECS.Service = "gone" })
	h.startManager()
	g.Expect(h.post(newBuild(1)).Code).To(Equal(http.StatusAccepted))
	g.Eventually(h.env("deployed"), timeout, poll).Should(WithTransform(rolloutResult, Equal(deployv1.ResultCompleted)))
	g.Eventually(h.env("missing"), timeout, poll).Should(WithTransform(readyReason, Equal("False/"+deployv1.ReasonServiceNotFound)))

	// The collector counts from a reader; here a client limited to this test's namespace.
	c := controllers.NewEnvironmentCollector(client.NewNamespacedClient(k8sClient, h.ns))
	want := `
# HELP autodeploy_environments Environments by Ready status and reason.
# TYPE autodeploy_environments gauge
autodeploy_environments{ready="False",reason="ServiceNotFound"} 1
autodeploy_environments{ready="True",reason="Deployed"} 1
`
	g.Expect(testutil.CollectAndCompare(c, strings.NewReader(want))).To(Succeed())
}
