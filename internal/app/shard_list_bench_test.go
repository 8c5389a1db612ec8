package app_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/app"
	"github.com/autodeploy-dev/autodeploy/internal/bench"
	"github.com/autodeploy-dev/autodeploy/internal/receiver"
)

// envsPerNamespace is how the list benchmark spreads its Environments: 100 per namespace, in
// applications of 10.
const envsPerNamespace = 100

// BenchmarkReceiverListByApplication measures what a sharded receiver's lookup costs: it
// lists a build's Environments from the API server with the field selector
// spec.application=<app> (a selectable field of the CRD), where an unsharded receiver looks
// them up in its cache's index. N Environments (AUTODEPLOY_BENCH_LIST_N, default 2,000), with
// the status of four deploys, are spread over namespaces of 100, in applications of 10. For
// each lookup it reports the client's time and kube-apiserver + etcd CPU per lookup (real
// CPU of the control plane's processes), for the cluster-wide route (all namespaces), a
// namespaced route, and the cache's index (the baseline, in the same run).
//
//	make bench-shard-list
func BenchmarkReceiverListByApplication(b *testing.B) {
	n := benchSize(b, "AUTODEPLOY_BENCH_LIST_N", 2000)
	h := newHarness(b)
	ctx := context.Background()
	nsOf := func(i int) string { return fmt.Sprintf("%s-%03d", h.ns, i/envsPerNamespace) }
	for k := 0; k*envsPerNamespace < n; k++ {
		if err := k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nsOf(k * envsPerNamespace)}}); err != nil {
			b.Fatal(err)
		}
	}
	fillDeployedEnvironmentsIn(b, nsOf, n)

	c, err := cache.New(restConfig, func() cache.Options { o := app.CacheOptions(nil); o.Scheme = scheme; return o }())
	if err != nil {
		b.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := receiver.IndexApplication(cctx, c); err != nil {
		b.Fatal(err)
	}
	go func() { _ = c.Start(cctx) }()
	if !c.WaitForCacheSync(cctx) {
		b.Fatal("cache did not sync")
	}
	const lookups = 200
	apps := n / 10
	measure := func(name string, r client.Reader, namespaced bool) {
		start, cpu0 := time.Now(), bench.ChildCPU()
		for j := range lookups {
			i := (j * 7919) % n // spread over the fleet
			opts := []client.ListOption{client.MatchingFields{receiver.ApplicationIndex: fmt.Sprintf("app-%04d", i/10)}}
			if namespaced {
				opts = append(opts, client.InNamespace(nsOf(i)))
			}
			list := &deployv1.EnvironmentList{}
			if err := r.List(ctx, list, opts...); err != nil {
				b.Fatal(err)
			}
			if len(list.Items) != 10 {
				b.Fatalf("%s: %d Environments of application app-%04d, want 10", name, len(list.Items), i/10)
			}
		}
		b.ReportMetric(float64(time.Since(start).Microseconds())/lookups, name+"-µs/lookup")
		b.ReportMetric(float64((bench.ChildCPU()-cpu0).Microseconds())/lookups, name+"-apiserver-CPU-µs/lookup")
	}
	live := apiReader(b)
	for b.Loop() {
		measure("cache", c, false)
		measure("namespaced-LIST", live, true)
		measure("cluster-LIST", live, false)
	}
	b.ReportMetric(float64(apps), "applications")
}

// apiReader is a live client, as the manager's API reader.
func apiReader(b *testing.B) client.Reader {
	c, err := client.New(restConfig, client.Options{Scheme: scheme})
	if err != nil {
		b.Fatal(err)
	}
	return c
}
