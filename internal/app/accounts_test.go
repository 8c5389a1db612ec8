package app_test

import (
	"net/http"
	"testing"

	. "github.com/onsi/gomega"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/ecssim"
)

const (
	roleA = "arn:aws:iam::111111111111:role/autodeploy"
	roleB = "arn:aws:iam::222222222222:role/autodeploy"
)

// TestEachEnvironmentDeploysThroughItsOwnRole: Environments naming a role in another account
// deploy there, with credentials from STS AssumeRole (and the external id where the role's
// trust policy requires it); a wrong external id stalls with AccessDenied.
func TestEachEnvironmentDeploysThroughItsOwnRole(t *testing.T) {
	h := newHarness(t, withSim(ecssim.WithRole(roleA, "ext-a"), ecssim.WithRole(roleB, "")))
	g := h.g
	a, b := h.sim.Account("111111111111"), h.sim.Account("222222222222")
	h.seedServiceIn(a, "prod", "shop-api", image("v1"))
	h.seedServiceIn(b, "prod", "shop-api", image("v1"))
	h.createEnv("account-a", func(e *deployv1.Environment) { e.Spec.ECS.RoleARN, e.Spec.ECS.ExternalID = roleA, "ext-a" })
	h.createEnv("account-b", func(e *deployv1.Environment) { e.Spec.ECS.RoleARN = roleB })
	// Its own service: account-a owns prod/shop-api of account A.
	h.createEnv("wrong-external-id", func(e *deployv1.Environment) {
		e.Spec.ECS.RoleARN, e.Spec.ECS.ExternalID, e.Spec.ECS.Service = roleA, "guess", "shop-web"
	})
	h.startManager()

	build := newBuild(3)
	g.Expect(h.post(build).Code).To(Equal(http.StatusAccepted))
	for _, name := range []string{"account-a", "account-b"} {
		g.Eventually(h.env(name), timeout, poll).Should(WithTransform(rolloutResult, Equal(deployv1.ResultCompleted)), name)
	}
	for _, acct := range []*ecssim.AccountView{a, b} {
		g.Expect(acct.Revisions("prod-shop-api")).To(Equal(2), acct.ID())
		g.Expect(acct.Calls("UpdateService")).To(Equal(1), acct.ID())
		svc, _ := acct.Service("prod", "shop-api")
		td, _ := acct.TaskDefinition(svc.TaskDefinitionARN)
		g.Expect(td["containerDefinitions"].([]any)[0].(map[string]any)["image"]).To(Equal(build.Image))
		g.Expect(svc.TaskDefinitionARN).To(ContainSubstring(acct.ID()))
	}
	g.Expect(h.sim.DefaultAccount().Calls("UpdateService")).To(BeZero(), "nothing went to the controller's own account")
	// Credentials are cached: one AssumeRole per account, not one per call.
	g.Expect(a.Calls("AssumeRole") + h.sim.DefaultAccount().Calls("AssumeRole") + b.Calls("AssumeRole")).To(BeNumerically("<=", 3))

	g.Eventually(h.env("wrong-external-id"), timeout, poll).Should(WithTransform(readyReason, Equal("False/"+deployv1.ReasonAccessDenied)))
	g.Expect(condition(h.getEnv("wrong-external-id"), deployv1.ReadyCondition).Message).To(ContainSubstring("spec.ecs.externalID"))
}
