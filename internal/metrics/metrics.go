// Package metrics defines autodeploy's Prometheus metrics, registered with controller-runtime's
// registry so that the manager's metrics endpoint serves them.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	// Deploys counts deploy steps by result: started (service updated), completed, failed
	// (rollout failed), superseded, stalled (needs the user) or retried (transient ECS error).
	Deploys = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "autodeploy_deploys_total",
		Help: "Deploys to ECS by result (started, completed, failed, superseded, stalled, retried).",
	}, []string{"result"})

	// ECSCalls counts ECS API calls by operation and result code ("OK" or the error code).
	ECSCalls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "autodeploy_ecs_calls_total",
		Help: "ECS API calls by operation and result code.",
	}, []string{"operation", "code"})

	// ReceiverRequests counts receiver requests by source (manifest, codebuild, ecr or unknown
	// for an event not yet or not understood), HTTP status code and tenant (the namespace of
	// an authenticated namespaced request, "*" for an authenticated cluster-wide one, "-" for
	// an unauthenticated one, so that callers cannot mint label values).
	ReceiverRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "autodeploy_receiver_requests_total",
		Help: "Receiver requests by source, HTTP status code and tenant.",
	}, []string{"source", "code", "tenant"})

	// ReceiverAuthFailures counts requests that failed authentication by reason: missing,
	// malformed, stale (signature timestamp out of the window) or mismatch (wrong key, or no
	// key for the namespace).
	ReceiverAuthFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "autodeploy_receiver_auth_failures_total",
		Help: "Receiver requests that failed authentication, by reason (missing, malformed, stale, mismatch).",
	}, []string{"reason"})

	// ReceiverDuplicates counts requests that changed nothing because they were seen before:
	// signature (a replayed signed manifest), event (an EventBridge event id delivered again)
	// or build (a build id every matching Environment already has).
	ReceiverDuplicates = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "autodeploy_receiver_duplicates_total",
		Help: "Receiver requests that were duplicates, by kind (signature, event, build).",
	}, []string{"kind"})

	// Builds counts per-Environment outcomes of received builds: recorded, duplicate, stale, conflict.
	Builds = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "autodeploy_builds_total",
		Help: "Builds received, per Environment, by outcome (recorded, duplicate, stale, conflict).",
	}, []string{"outcome"})

	// ReceiverLiveReads counts the Environments the receiver read from the API server while
	// recording a build, by why: conflict (a write from the cached object lost an
	// optimistic-concurrency race) or confirm (the cached object said the build needs no write,
	// which the live object confirms, since the cache may lag behind a re-created Environment).
	// A write that goes through from the cache costs no read.
	ReceiverLiveReads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "autodeploy_receiver_live_reads_total",
		Help: "Environments the receiver read live while recording a build, by why (conflict, confirm).",
	}, []string{"why"})

	// BuildToDeployed is the time from a build finishing to its ECS rollout completing.
	BuildToDeployed = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "autodeploy_build_to_deployed_seconds",
		Help:    "Time from a build finishing to its ECS rollout completing.",
		Buckets: prometheus.ExponentialBuckets(5, 2, 10),
	})

	// ECSThrottleWait is the time ECS calls waited for the client-side rate budget.
	ECSThrottleWait = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "autodeploy_ecs_budget_wait_seconds",
		Help:    "Time ECS calls waited for the client-side API rate budget, by throttle category.",
		Buckets: prometheus.ExponentialBuckets(0.01, 4, 8),
	}, []string{"category"})

	// Rollbacks counts failed ECS rollouts that ECS rolled back (the deployment circuit
	// breaker or a CloudWatch alarm), so that the service runs what ran before.
	Rollbacks = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "autodeploy_rollbacks_total",
		Help: "Failed ECS rollouts that ECS rolled back to what ran before.",
	})

	// RolloutPolls counts DescribeServices calls made by the rollout tracker.
	RolloutPolls = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "autodeploy_rollout_polls_total",
		Help: "DescribeServices calls the fallback rollout tracker made.",
	})
)

// Shards is the number of shards the replica's manager splits the Environments into (1: not
// sharded); the alerts compare it with the shard Leases held.
var Shards = prometheus.NewGauge(prometheus.GaugeOpts{
	Name: "autodeploy_shards",
	Help: "Shards the Environments are split into (--shards; 1: not sharded).",
})

func init() {
	ctrlmetrics.Registry.MustRegister(Deploys, ECSCalls, ReceiverRequests, ReceiverAuthFailures, ReceiverDuplicates, ReceiverLiveReads, Builds, BuildToDeployed, ECSThrottleWait, Rollbacks, RolloutPolls, Shards)
}

// EnvironmentReconciles returns how many reconciles the Environment controller finished in
// this process (controller-runtime's controller_runtime_reconcile_total), or -1 when the
// registry cannot be read. Tests and benchmarks use it to know every Environment was seen.
func EnvironmentReconciles() float64 {
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		return -1
	}
	var total float64
	for _, f := range families {
		if f.GetName() != "controller_runtime_reconcile_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "controller" && l.GetValue() == "environment" {
					total += m.GetCounter().GetValue()
				}
			}
		}
	}
	return total
}
