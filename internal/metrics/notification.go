package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Notifications counts deliveries of Notification outcomes by provider (webhook, slack, github)
// and result: delivered, failed (retried with backoff), rejected (refused for good by the
// endpoint, not retried) or skipped (the provider cannot tell it, for example a GitHub
// deployment of a build with no known commit).
var Notifications = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "autodeploy_notifications_total",
	Help: "Notification deliveries by provider and result (delivered, failed, rejected, skipped).",
}, []string{"provider", "result"})

func init() {
	ctrlmetrics.Registry.MustRegister(Notifications)
}
