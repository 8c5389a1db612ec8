package app_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
	g.Expect(testutil.CollectAndCompare(c, strings.NewReader(want), "autodeploy_environments")).To(Succeed())

	// Only the stalled Environment has a stalled-since series, at its condition's transition.
	stalled := meta.FindStatusCondition(h.getEnv("missing").Status.Conditions, deployv1.StalledCondition)
	g.Expect(stalled).NotTo(BeNil())
	g.Expect(stalled.Status).To(Equal(metav1.ConditionTrue))
	want = fmt.Sprintf(`
# HELP autodeploy_environment_stalled_since_timestamp_seconds Unix time at which the Environment's Stalled condition became True (it needs a change by the user), by Environment and reason; only stalled Environments have a series.
# TYPE autodeploy_environment_stalled_since_timestamp_seconds gauge
autodeploy_environment_stalled_since_timestamp_seconds{environment="missing",environment_namespace=%q,reason="ServiceNotFound"} %d
`, h.ns, stalled.LastTransitionTime.Unix())
	g.Expect(testutil.CollectAndCompare(c, strings.NewReader(want), "autodeploy_environment_stalled_since_timestamp_seconds")).To(Succeed())
}
