package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/controllers"
	"github.com/autodeploy-dev/autodeploy/internal/app"
	"github.com/autodeploy-dev/autodeploy/internal/receiver"
)

// BenchmarkCachedEnvironmentMemory measures what one Environment costs the manager's memory
// once its cache has listed it: N Environments (AUTODEPLOY_BENCH_CACHE_N, default 2,000),
// each kubectl-applied (with its last-applied copy) and with a status as a deployed one has
// it after four deploys, are listed into a cache with the manager's options and indexes,
// and the live Go heap after a collection is divided by N. The baseline, in the same run, is
// a cache that keeps every field (no app.CacheOptions); the stored JSON of one Environment
// (etcd's copy) and of its status.history are reported beside both. Two more caches tell
// the parts apart: one without the field indexes, one whose transform also drops the
// status history (what the history costs; the manager keeps it, it reads it).
//
//	make bench-memory
func BenchmarkCachedEnvironmentMemory(b *testing.B) {
	n := benchSize(b, "AUTODEPLOY_BENCH_CACHE_N", 2000)
	h := newHarness(b)
	stored, history := fillDeployedEnvironments(b, h, n)
	namespaces := map[string]cache.Config{h.ns: {}}
	for b.Loop() {
		trimmed := cachedHeapPerEnvironment(b, h, n, app.CacheOptions(namespaces), true)
		full := cachedHeapPerEnvironment(b, h, n, cache.Options{DefaultNamespaces: namespaces}, true)
		noIndexes := cachedHeapPerEnvironment(b, h, n, app.CacheOptions(namespaces), false)
		noHistory := app.CacheOptions(namespaces)
		noHistory.DefaultTransform = func(in any) (any, error) {
			if e, ok := in.(*deployv1.Environment); ok {
				e.Status.History = nil
			}
			return app.TrimForCache(in)
		}
		withoutHistory := cachedHeapPerEnvironment(b, h, n, noHistory, true)
		b.ReportMetric(trimmed, "heap-B/env")
		b.ReportMetric(full, "untrimmed-heap-B/env")
		b.ReportMetric(full/trimmed, "x-smaller")
		b.ReportMetric(trimmed-noIndexes, "indexes-heap-B/env")
		b.ReportMetric(trimmed-withoutHistory, "history-heap-B/env")
		b.ReportMetric(float64(stored), "stored-B/env")
		b.ReportMetric(float64(history), "history-stored-B/env")
	}
}

// fillDeployedEnvironments creates n Environments with the status of four deploys in the
// harness's namespace and returns the stored JSON size of one, and of its status.history.
func fillDeployedEnvironments(b *testing.B, h *harness, n int) (int, int) {
	return fillDeployedEnvironmentsIn(b, func(int) string { return h.ns }, n)
}

// fillDeployedEnvironmentsIn is fillDeployedEnvironments with Environment i in namespace
// nsOf(i).
func fillDeployedEnvironmentsIn(b *testing.B, nsOf func(i int) string, n int) (int, int) {
	ctx := context.Background()
	now := metav1.NewTime(time.Now().Truncate(time.Second))
	var size, history int
	for i := range n {
		name := fmt.Sprintf("env-%05d", i)
		env := &deployv1.Environment{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: nsOf(i), Labels: map[string]string{"team": "shop"}},
			Spec: deployv1.EnvironmentSpec{
				Application: fmt.Sprintf("app-%04d", i/10), Branch: "main", AutoDeploy: true,
				ECS: deployv1.ECSTarget{Region: "us-east-1", Cluster: "prod", Service: name, Container: "web"},
			},
		}
		applied, _ := json.Marshal(env)
		env.Annotations = map[string]string{"kubectl.kubernetes.io/last-applied-configuration": string(applied)}
		if err := k8sClient.Create(ctx, env, client.FieldOwner("kubectl-client-side-apply")); err != nil {
			b.Fatal(err)
		}
		st := &env.Status
		for d := 4; d >= 1; d-- {
			img := fmt.Sprintf("123456789012.dkr.ecr.us-east-1.amazonaws.com/app-%04d:b%d", i/10, d)
			st.History = append(st.History, deployv1.Deploy{
				Image: img, Build: &deployv1.BuildRef{Application: env.Spec.Application, Source: deployv1.SourceManifest, ID: fmt.Sprintf("%s:build-%d", env.Spec.Application, d), Number: int64(d)},
				Trigger: deployv1.TriggerBuild, PreviousImage: img + "-prev",
				TaskDefinitionARN: fmt.Sprintf("arn:aws:ecs:us-east-1:123456789012:task-definition/prod-%s:%d", name, d+1),
				DeploymentID:      fmt.Sprintf("ecs-svc/%019d", i*10+d), Result: deployv1.ResultCompleted,
				ImageDigest: "sha256:" + fmt.Sprintf("%064d", d), StartedAt: now, FinishedAt: &now,
			})
		}
		last := &st.History[0]
		st.LatestBuild = &deployv1.Build{Application: env.Spec.Application, Source: deployv1.SourceManifest, ID: last.Build.ID, Number: last.Build.Number,
			Image: last.Image, Commit: "3f2c9e1", Branch: "main", ReceivedAt: now}
		st.DeployedImage, st.DesiredImage, st.DeployedBuild = last.Image, last.Image, last.Build
		st.Target = env.Spec.ECS.DeepCopy()
		st.ObservedGeneration = 1
		for _, c := range []string{deployv1.ReadyCondition, deployv1.ReconcilingCondition, deployv1.StalledCondition, deployv1.PinnedCondition} {
			st.Conditions = append(st.Conditions, metav1.Condition{Type: c, Status: metav1.ConditionFalse, Reason: deployv1.ReasonDeployed,
				Message: "ECS deployment " + last.DeploymentID + " of build 4 (" + last.Image + ") completed", LastTransitionTime: now, ObservedGeneration: 1})
		}
		if err := k8sClient.Status().Update(ctx, env, client.FieldOwner("autodeploy")); err != nil {
			b.Fatal(err)
		}
		if i == 0 {
			raw, _ := json.Marshal(env)
			hist, _ := json.Marshal(env.Status.History)
			size, history = len(raw), len(hist)
		}
	}
	return size, history
}

// cachedHeapPerEnvironment lists the namespace's n Environments into a cache made with opts
// (and the manager's field indexes, if indexed), and returns the live heap it added per
// Environment.
func cachedHeapPerEnvironment(b *testing.B, h *harness, n int, opts cache.Options, indexed bool) float64 {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	opts.Scheme = scheme
	before := liveHeap()
	c, err := cache.New(restConfig, opts)
	if err != nil {
		b.Fatal(err)
	}
	indexes := []func(context.Context, client.FieldIndexer) error{receiver.IndexApplication, controllers.IndexDeploymentID, controllers.IndexService, controllers.IndexUpstream,
		func(ctx context.Context, i client.FieldIndexer) error {
			return controllers.IndexServiceKey(ctx, i, "123456789012")
		}}
	if !indexed {
		indexes = nil
	}
	for _, index := range indexes {
		if err := index(ctx, c); err != nil {
			b.Fatal(err)
		}
	}
	go func() { _ = c.Start(ctx) }()
	if !c.WaitForCacheSync(ctx) {
		b.Fatal("cache did not sync")
	}
	list := &deployv1.EnvironmentList{}
	if err := c.List(ctx, list, client.InNamespace(h.ns)); err != nil || len(list.Items) != n {
		b.Fatalf("cache lists %d Environments, want %d: %v", len(list.Items), n, err)
	}
	list = nil
	per := float64(liveHeap()-before) / float64(n)
	runtime.KeepAlive(c)
	return per
}

func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
