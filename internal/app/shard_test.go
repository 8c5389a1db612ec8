package app_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/shard"
)

// shardLease is the Lease of shard a, as cmd/manager names it.
func shardLease(a shard.Assignment) string {
	return shard.LeaseName("autodeploy.deploy.autodeploy.dev", a)
}

// namespacesOfShards creates one namespace per shard of count, named after the test's, and
// returns them in shard order.
func namespacesOfShards(h *harness, count int) []string {
	h.t.Helper()
	out := make([]string, count)
	found := 0
	for i := 0; found < count; i++ {
		ns := fmt.Sprintf("%s-s%d", h.ns, i)
		if len(ns) > 63 {
			ns = ns[len(ns)-63:]
		}
		if s := shard.Of(ns, count); out[s] == "" {
			out[s] = ns
			found++
			h.g.Expect(k8sClient.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
		}
	}
	return out
}

// holderOf returns the holder of a Lease in the test's namespace ("" when none).
func holderOf(h *harness, name string) func() string {
	return func() string {
		l := &coordinationv1.Lease{}
		if err := k8sClient.Get(context.Background(), types.NamespacedName{Namespace: h.ns, Name: name}, l); err != nil || l.Spec.HolderIdentity == nil {
			return ""
		}
		return *l.Spec.HolderIdentity
	}
}

// claimed is the log line of a manager that claimed shard a.
func claimed(a shard.Assignment) string {
	return fmt.Sprintf(`"Claimed a shard","shard":"%s"`, a)
}

// TestShardedManagersSplitTheFleetAndDeployEachBuildOnce runs the manager binary three
// times with --shards=2 over Environments in two namespaces, one per shard. Two managers
// claim one shard each, the third waits as a standby. Each manager labels and caches only
// its shard's Environments, yet either receiver records a build on both (the API server's
// field selector finds them), and each build is deployed once per service. When a shard's
// holder is killed, the standby takes its Lease over and deploys the next build there.
func TestShardedManagersSplitTheFleetAndDeployEachBuildOnce(t *testing.T) {
	h := newHarness(t)
	g := h.g
	ctx := context.Background()
	nss := namespacesOfShards(h, 2)
	shards := []shard.Assignment{{Index: 0, Count: 2}, {Index: 1, Count: 2}}
	for i, ns := range nss {
		svc := fmt.Sprintf("svc-%d", i)
		h.seedService("prod", svc, image("v1"))
		g.Expect(k8sClient.Create(ctx, &deployv1.Environment{
			ObjectMeta: metav1.ObjectMeta{Name: "prod", Namespace: ns},
			Spec: deployv1.EnvironmentSpec{
				Application: "shop-api", Branch: "main", AutoDeploy: true,
				ECS: deployv1.ECSTarget{Region: "us-east-1", Cluster: "prod", Service: svc, Container: "web"},
			},
		})).To(Succeed())
	}
	// An Environment of the same application in a namespace the managers do not watch.
	outside := fmt.Sprintf("%s-out", h.ns)
	g.Expect(k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: outside}})).To(Succeed())
	g.Expect(k8sClient.Create(ctx, &deployv1.Environment{
		ObjectMeta: metav1.ObjectMeta{Name: "prod", Namespace: outside},
		Spec: deployv1.EnvironmentSpec{
			Application: "shop-api", Branch: "main", AutoDeploy: true,
			ECS: deployv1.ECSTarget{Region: "us-east-1", Cluster: "prod", Service: "unwatched", Container: "web"},
		},
	})).To(Succeed())
	unwatched := func() *deployv1.Environment {
		e := &deployv1.Environment{}
		g.Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: outside, Name: "prod"}, e)).To(Succeed())
		return e
	}
	envOf := func(i int) func() *deployv1.Environment {
		return func() *deployv1.Environment {
			e := &deployv1.Environment{}
			if err := k8sClient.Get(ctx, types.NamespacedName{Namespace: nss[i], Name: "prod"}, e); err != nil {
				return nil
			}
			return e
		}
	}
	label := func(e *deployv1.Environment) string { return e.Labels[shard.Label] }

	f := newProcessFixture(h)
	args := []string{"--shards=2", "--watch-namespaces=" + strings.Join(nss, ","), "--leader-election-namespace=" + h.ns,
		"--leader-elect-lease-duration=2s", "--leader-elect-renew-deadline=1500ms", "--leader-elect-retry-period=200ms"}
	a := f.start(args...)
	g.Eventually(a.log.String, timeout, poll).Should(ContainSubstring(claimed(shards[0])), "the first manager takes the lowest free shard")
	b := f.start(args...)
	g.Eventually(b.log.String, timeout, poll).Should(ContainSubstring(claimed(shards[1])))
	g.Eventually(holderOf(h, shardLease(shards[0])), timeout, poll).ShouldNot(BeEmpty())
	g.Eventually(holderOf(h, shardLease(shards[1])), timeout, poll).ShouldNot(BeEmpty())
	g.Expect(holderOf(h, shardLease(shards[0]))()).NotTo(Equal(holderOf(h, shardLease(shards[1]))()))
	standby := f.launch(args...)
	g.Eventually(standby.log.String, timeout, poll).Should(ContainSubstring("Every shard is held: waiting as a standby"))

	// Each shard's holder labels its own namespace's Environment.
	for i := range nss {
		g.Eventually(envOf(i), timeout, poll).Should(WithTransform(label, Equal(shards[i].String())), "%s\n%s", a.log, b.log)
	}

	// A build posted to shard 0's manager is recorded on both Environments and deployed once each.
	first := newBuild(1)
	g.Expect(a.post(first)).To(Equal(http.StatusAccepted))
	// The receiver answered after its writes: none went outside the watched namespaces.
	g.Expect(unwatched().Status.LatestBuild).To(BeNil(), "a namespace the managers do not watch is not written")
	g.Expect(unwatched().Labels).NotTo(HaveKey(shard.Label), "nor labelled")
	for i := range nss {
		g.Eventually(envOf(i), timeout, poll).Should(And(
			WithTransform(deployedImage, Equal(first.Image)),
			WithTransform(rolloutResult, Equal(deployv1.ResultCompleted))), "%s\n%s", a.log, b.log)
	}
	g.Expect(h.sim.Calls("UpdateService")).To(Equal(2), "one UpdateService per service")

	// Shard 1's holder dies without releasing its Lease; the standby takes shard 1 over.
	b.kill()
	g.Eventually(standby.log.String, timeout, poll).Should(ContainSubstring(claimed(shards[1])))
	g.Expect(standby.log.String()).NotTo(ContainSubstring(claimed(shards[0])), "shard 0 is still held")

	second := newBuild(2)
	g.Expect(a.post(second)).To(Equal(http.StatusAccepted))
	for i := range nss {
		g.Eventually(envOf(i), timeout, poll).Should(And(
			WithTransform(deployedImage, Equal(second.Image)),
			WithTransform(rolloutResult, Equal(deployv1.ResultCompleted))), "%s\n%s", a.log, standby.log)
	}
	g.Expect(h.sim.Calls("UpdateService")).To(Equal(4), "one UpdateService per service and build")
	for i := range nss {
		g.Expect(h.revisionImages(fmt.Sprintf("prod-svc-%d", i))).To(Equal([]string{image("v1"), first.Image, second.Image}))
	}
}

// TestShardsRefuseWhatCannotWork: a bad shard count, and sharding without rollout polling
// (a replica's cache cannot match ECS events to other shards' Environments), stop the
// manager at once with a message naming the flag.
func TestShardsRefuseWhatCannotWork(t *testing.T) {
	h := newHarness(t)
	f := newProcessFixture(h)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--shards=0"}, "--shards must be at least 1, not 0"},
		{[]string{"--shards=2", "--rollout-polling=false"}, "--shards above 1 needs --rollout-polling"},
	} {
		p := f.launch(c.args...)
		h.g.Eventually(p.exitStatus, timeout, poll).Should(Equal("exit status 2"), p.log.String())
		h.g.Expect(p.log.String()).To(ContainSubstring(c.want))
	}
}
