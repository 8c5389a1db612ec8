// Package metrics defines autodeploy's Prometheus metrics, registered with controller-runtime's
// registry so that the manager's metrics endpoint serves them.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	// Deploys counts deploys by result: succeeded, failed (needs the user) or retried.
	Deploys = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "autodeploy_deploys_total",
		Help: "Deploys to ECS by result (succeeded, failed, retried).",
	}, []string{"result"})

	// ECSCalls counts ECS API calls by operation and result code ("OK" or the error code).
	ECSCalls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "autodeploy_ecs_calls_total",
		Help: "ECS API calls by operation and result code.",
	}, []string{"operation", "code"})

	// ReceiverRequests counts manifest requests by HTTP status code.
	ReceiverRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "autodeploy_receiver_requests_total",
		Help: "Build manifest requests by HTTP status code.",
	}, []string{"code"})

	// Builds counts per-Environment outcomes of received builds: recorded, duplicate, stale, conflict.
	Builds = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "autodeploy_builds_total",
		Help: "Builds received, per Environment, by outcome (recorded, duplicate, stale, conflict).",
	}, []string{"outcome"})
)

func init() {
	ctrlmetrics.Registry.MustRegister(Deploys, ECSCalls, ReceiverRequests, Builds)
}
