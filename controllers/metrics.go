package controllers

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
)

// EnvironmentCollector exports how many Environments are in each state (their Ready
// condition's status and reason), counted from the informer cache when scraped: no API call.
type EnvironmentCollector struct {
	Reader client.Reader
	desc   *prometheus.Desc
}

// NewEnvironmentCollector returns a collector reading from reader (the manager's cache).
func NewEnvironmentCollector(reader client.Reader) *EnvironmentCollector {
	return &EnvironmentCollector{Reader: reader, desc: prometheus.NewDesc("autodeploy_environments",
		"Environments by Ready status and reason.", []string{"ready", "reason"}, nil)}
}

// Describe implements prometheus.Collector.
func (c *EnvironmentCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

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
		k := key{"Unknown", "NotReconciled"}
		if cond := meta.FindStatusCondition(list.Items[i].Status.Conditions, deployv1.ReadyCondition); cond != nil {
			k = key{string(cond.Status), cond.Reason}
		}
		counts[k]++
	}
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), k.ready, k.reason)
	}
}
