package app_test

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/types"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/ecssim"
)

// conflictOwner returns the owner (namespace/name) the Environment's ServiceConflict
// conditions name, or "" when it is not Stalled with reason ServiceConflict.
func conflictOwner(e *deployv1.Environment) string {
	c := condition(e, deployv1.StalledCondition)
	r := condition(e, deployv1.ReadyCondition)
	if c == nil || r == nil || c.Status != "True" || c.Reason != deployv1.ReasonServiceConflict || r.Status != "False" || r.Reason != deployv1.ReasonServiceConflict {
		return ""
	}
	owner, _, _ := strings.Cut(strings.TrimPrefix(r.Message, "Environment "), ",")
	return owner
}

// TestOneEnvironmentPerServiceHoweverSpelled: three Environments name one ECS service, by
// its short name, its new-format ARN and its old-format ARN. Only the oldest deploys; the
// others are Stalled (ServiceConflict) naming it and make no ECS call at all, and the pin of
// one of them is not applied. When the owner is deleted the next oldest takes over and
// deploys its pin; when that one moves to another service the last one takes over and
// deploys its build; an Environment that moves onto a service another one owns stops
// deploying.
func TestOneEnvironmentPerServiceHoweverSpelled(t *testing.T) {
	const (
		newARN = "arn:aws:ecs:us-east-1:123456789012:service/prod/shop-api"
		oldARN = "arn:aws:ecs:us-east-1:123456789012:service/shop-api"
	)
	// The non-owners spell the service by ARN and the owner by name, so a call naming the
	// service by ARN is a call of a non-owner.
	var byARN atomic.Int64
	h := newHarness(t, withSim(ecssim.WithCallObserver(func(c ecssim.Call) {
		if strings.Contains(string(c.Body), ":service/") {
			byARN.Add(1)
		}
	})))
	g := h.g
	family := h.seedService("prod", "shop-api", image("v1"))
	h.seedService("prod", "shop-web", image("w1"))
	// Created in name order, so the order holds whether or not two share a creation second.
	h.createEnv("a-short", nil)
	h.createEnv("b-new-arn", func(e *deployv1.Environment) {
		e.Spec.ECS.Service = newARN
		e.Spec.PinnedImage = image("pin")
	})
	h.createEnv("c-old-arn", func(e *deployv1.Environment) { e.Spec.ECS.Service = oldARN })
	h.startManager()

	b := newBuild(5)
	r := h.post(b)
	g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
	g.Expect(r.Body["updated"]).To(HaveLen(3), "every Environment records the build")
	g.Eventually(h.env("a-short"), timeout, poll).Should(And(
		WithTransform(deployedImage, Equal(b.Image)),
		WithTransform(rolloutResult, Equal(deployv1.ResultCompleted))))
	for _, name := range []string{"b-new-arn", "c-old-arn"} {
		g.Eventually(h.env(name), timeout, poll).Should(WithTransform(conflictOwner, Equal(h.ns+"/a-short")), name)
		g.Expect(h.getEnv(name).Status.LatestBuild.Number).To(Equal(b.Number), "builds are recorded")
	}
	g.Consistently(func() string { return h.webImage("prod", "shop-api") }, "300ms", poll).Should(Equal(b.Image), "the pin of a non-owner is not applied")
	g.Expect(byARN.Load()).To(BeZero(), "a non-owner makes no ECS call")
	g.Expect(h.sim.Calls("RegisterTaskDefinition")).To(Equal(1))
	g.Expect(h.sim.Calls("UpdateService")).To(Equal(1))

	// The owner goes away: the oldest of the others takes over and deploys its pin.
	g.Expect(k8sClient.Delete(context.Background(), h.getEnv("a-short"))).To(Succeed())
	g.Eventually(h.env("b-new-arn"), timeout, poll).Should(And(
		WithTransform(deployedImage, Equal(image("pin"))),
		WithTransform(rolloutResult, Equal(deployv1.ResultCompleted)),
		WithTransform(readyReason, HavePrefix("True/"))))
	g.Expect(h.webImage("prod", "shop-api")).To(Equal(image("pin")))
	g.Eventually(h.env("c-old-arn"), timeout, poll).Should(WithTransform(conflictOwner, Equal(h.ns+"/b-new-arn")))
	g.Expect(h.sim.Revisions(family)).To(Equal(3))

	// The owner moves to another service: the last one takes over and deploys its build.
	h.updateEnv("b-new-arn", func(e *deployv1.Environment) { e.Spec.ECS.Service = "shop-web" })
	g.Eventually(h.env("c-old-arn"), timeout, poll).Should(And(
		WithTransform(deployedImage, Equal(b.Image)),
		WithTransform(rolloutResult, Equal(deployv1.ResultCompleted)),
		WithTransform(readyReason, Equal("True/"+deployv1.ReasonDeployed))))
	g.Expect(h.webImage("prod", "shop-api")).To(Equal(b.Image))
	// The rollout on shop-web has ended (its tracker makes no call after this).
	g.Eventually(h.env("b-new-arn"), timeout, poll).Should(And(
		WithTransform(deployedImage, Equal(image("pin"))),
		WithTransform(rolloutResult, Equal(deployv1.ResultCompleted))))
	g.Expect(h.webImage("prod", "shop-web")).To(Equal(image("pin")))

	// Moving onto a service an older Environment owns: no ECS call, Stalled.
	calls := h.sim.TotalCalls()
	h.updateEnv("c-old-arn", func(e *deployv1.Environment) {
		e.Spec.ECS.Service = "arn:aws:ecs:us-east-1:123456789012:service/prod/shop-web"
	})
	g.Eventually(h.env("c-old-arn"), timeout, poll).Should(WithTransform(conflictOwner, Equal(h.ns+"/b-new-arn")))
	g.Consistently(h.sim.TotalCalls, "300ms", poll).Should(Equal(calls), "a non-owner makes no ECS call")
	g.Expect(h.webImage("prod", "shop-web")).To(Equal(image("pin")))
}

// TestServiceConflictAcrossNamespaces: Environments of two tenants naming one AWS service
// conflict too; the younger one deploys nothing until the older one is deleted.
func TestServiceConflictAcrossNamespaces(t *testing.T) {
	h := newHarness(t)
	g := h.g
	other := h.addNamespace("other")
	h.seedService("prod", "shop-api", image("v1"))
	h.createEnv("first", nil)
	second := &deployv1.Environment{}
	second.Name, second.Namespace = "second", other
	second.Spec = h.getEnv("first").Spec
	second.Spec.PinnedImage = image("pin")
	g.Expect(k8sClient.Create(context.Background(), second)).To(Succeed())
	h.startManager()

	b := newBuild(7)
	g.Expect(h.post(b).Code).To(Equal(http.StatusAccepted))
	g.Eventually(h.env("first"), timeout, poll).Should(WithTransform(deployedImage, Equal(b.Image)))
	key := func() *deployv1.Environment {
		e := &deployv1.Environment{}
		if k8sClient.Get(context.Background(), types.NamespacedName{Namespace: other, Name: "second"}, e) != nil {
			return nil
		}
		return e
	}
	g.Eventually(key, timeout, poll).Should(WithTransform(conflictOwner, Equal(h.ns+"/first")))
	g.Expect(h.webImage("prod", "shop-api")).To(Equal(b.Image))

	g.Expect(k8sClient.Delete(context.Background(), h.getEnv("first"))).To(Succeed())
	g.Eventually(key, timeout, poll).Should(WithTransform(deployedImage, Equal(image("pin"))))
	g.Expect(h.webImage("prod", "shop-api")).To(Equal(image("pin")))
}

// TestContradictoryTargetIsStalledWithoutECSCalls: a service ARN of another Region than
// spec.ecs.region names no single service: Stalled (InvalidTarget) saying so, no ECS call.
func TestContradictoryTargetIsStalledWithoutECSCalls(t *testing.T) {
	h := newHarness(t)
	g := h.g
	h.seedService("prod", "shop-api", image("v1"))
	h.createEnv("prod", func(e *deployv1.Environment) {
		e.Spec.ECS.Service = "arn:aws:ecs:eu-west-1:123456789012:service/prod/shop-api"
	})
	h.startManager()
	g.Expect(h.post(newBuild(3)).Code).To(Equal(http.StatusAccepted))
	g.Eventually(h.env("prod"), timeout, poll).Should(And(
		WithTransform(readyReason, Equal("False/"+deployv1.ReasonInvalidTarget)),
		WithTransform(func(e *deployv1.Environment) string {
			if c := condition(e, deployv1.StalledCondition); c != nil {
				return c.Message
			}
			return ""
		},
			ContainSubstring("is in Region eu-west-1 but spec.ecs.region is us-east-1"))))
	g.Consistently(h.sim.TotalCalls, "300ms", poll).Should(BeZero())
}
