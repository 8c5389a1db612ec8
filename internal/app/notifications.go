package app

import (
	"time"

	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/autodeploy-dev/autodeploy/controllers"
	"github.com/autodeploy-dev/autodeploy/internal/notification"
)

// setupNotifications adds the notification controller: its own controller and workqueue, so
// that an endpoint that is slow or down never delays a deploy.
func setupNotifications(mgr ctrl.Manager, opts Options) error {
	no := opts.Notifications
	if no.Timeout == 0 {
		no.Timeout = 10 * time.Second
	}
	return (&controllers.NotificationReconciler{
		Client:         mgr.GetClient(),
		APIReader:      mgr.GetAPIReader(),
		Sender:         &notification.Sender{HTTP: notification.NewHTTPClient(no.Timeout), Now: opts.Now},
		Now:            opts.Now,
		RetryBaseDelay: no.RetryBaseDelay,
		RetryMaxDelay:  no.RetryMaxDelay,
		InScope:        opts.Shard.Owns,
	}).SetupWithManager(mgr)
}
