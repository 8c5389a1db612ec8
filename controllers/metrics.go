package controllers

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
)

// EnvironmentCollector exports how many Environments are in each state (their Ready
// condition's status and reason), and since when each stalled Environment has been stalled,
// counted from the informer cache when scraped: no API call.
type EnvironmentCollector struct {
	Reader       client.Reader
	desc         *prometheus.Desc
	stalledSince *prometheus.Desc
}

// NewEnvironmentCollector returns a collector reading from reader (the manager's cache).
func NewEnvironmentCollector(reader client.Reader) *EnvironmentCollector {
	return &EnvironmentCollector{
		Reader: reader,
		desc: prometheus.NewDesc("autodeploy_environments",
			"Environments by Ready status and reason.", []string{"ready", "reason"}, nil),
		// One series per stalled Environment only, so the cardinality stays with the few that
		// need a person. The labels avoid "namespace", which scrape configs set to the pod's.
		stalledSince: prometheus.NewDesc("autodeploy_environment_stalled_since_timestamp_seconds",
			"Unix time at which the Environment's Stalled condition became True (it needs a change by the user), by Environment and reason; only stalled Environments have a series.",
			[]string{"environment_namespace", "environment", "reason"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *EnvironmentCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.desc
	ch <- c.stalledSince
}

// Collect implements prometheus.Collector.
func (c *EnvironmentCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	list := &deployv1.EnvironmentList{}
	// Read only: the cache's objects need no copy.
	if err := c.Reader.List(ctx, list, client.UnsafeDisableDeepCopy); err != nil {
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}
	type key struct{ ready, reason string }
	counts := map[key]int{}
	for i := range list.Items {
		env := &list.Items[i]
		k := key{"Unknown", "NotReconciled"}
		if cond := meta.FindStatusCondition(env.Status.Conditions, deployv1.ReadyCondition); cond != nil {
			k = key{string(cond.Status), cond.Reason}
		}
		counts[k]++
		if cond := meta.FindStatusCondition(env.Status.Conditions, deployv1.StalledCondition); cond != nil && cond.Status == metav1.ConditionTrue {
			ch <- prometheus.MustNewConstMetric(c.stalledSince, prometheus.GaugeValue, float64(cond.LastTransitionTime.Unix()),
				env.Namespace, env.Name, cond.Reason)
		}
	}
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), k.ready, k.reason)
	}
}
