// Command manager runs the autodeploy controller: the Environment reconciler (leader-elected)
// and the build manifest receiver (on every replica).
package main

import (
	"context"
	"flag"
	"os"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/controllers"
	"github.com/autodeploy-dev/autodeploy/internal/app"
	"github.com/autodeploy-dev/autodeploy/internal/awsecs"
	"github.com/autodeploy-dev/autodeploy/internal/receiver"
)

var scheme = runtime.NewScheme()

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(deployv1.AddToScheme(scheme))
}

func main() {
	var (
		metricsAddr, probeAddr, receiverAddr, secretFile string
		leaderElect                                      bool
		leaderElectionNamespace                          string
		maxConcurrent                                    int
		retryBase, retryMax                              time.Duration
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8080", "Address the metrics endpoint binds to; 0 disables it.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address the health probes bind to.")
	flag.StringVar(&receiverAddr, "receiver-bind-address", ":9292", "Address the build manifest receiver binds to.")
	flag.StringVar(&secretFile, "manifest-secret-file", "", "File holding the manifest signing key (one key per line; two during a rotation).")
	flag.BoolVar(&leaderElect, "leader-elect", false, "Elect a leader so that one replica reconciles; every replica receives manifests.")
	flag.StringVar(&leaderElectionNamespace, "leader-election-namespace", "", "Namespace of the leader election lease (default: the pod's namespace).")
	flag.IntVar(&maxConcurrent, "max-concurrent-reconciles", 4, "Environments deployed in parallel.")
	flag.DurationVar(&retryBase, "retry-base-delay", time.Second, "First delay after a transient ECS error; it doubles per failure.")
	flag.DurationVar(&retryMax, "retry-max-delay", 5*time.Minute, "Longest delay between retries after transient ECS errors.")
	opts := zap.Options{}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))
	setupLog := ctrl.Log.WithName("setup")

	if secretFile == "" {
		setupLog.Error(nil, "--manifest-secret-file is required")
		os.Exit(2)
	}
	keys, err := receiver.NewKeyFile(secretFile)
	if err != nil {
		setupLog.Error(err, "Reading the manifest key failed")
		os.Exit(1)
	}

	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Scheme:                  scheme,
		Metrics:                 metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress:  probeAddr,
		LeaderElection:          leaderElect,
		LeaderElectionID:        "autodeploy.deploy.autodeploy.dev",
		LeaderElectionNamespace: leaderElectionNamespace,
		// The lease is given up on a clean stop so the next replica takes over at once.
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		setupLog.Error(err, "Creating the manager failed")
		os.Exit(1)
	}

	ctx := ctrl.SetupSignalHandler()
	if err := run(ctx, mgr, keys, receiverAddr, maxConcurrent, retryBase, retryMax); err != nil {
		setupLog.Error(err, "Manager stopped with an error")
		os.Exit(1)
	}
}

func run(ctx context.Context, mgr ctrl.Manager, keys *receiver.KeyFile, receiverAddr string, maxConcurrent int, retryBase, retryMax time.Duration) error {
	ecsClients, err := awsecs.New(ctx)
	if err != nil {
		return err
	}
	if err := app.Setup(ctx, mgr, app.Options{
		ReceiverAddr: receiverAddr,
		Keys:         keys.Keys,
		ECS: func(_ context.Context, region string) (controllers.ECSAPI, error) {
			return ecsClients.For(region), nil
		},
		MaxConcurrentReconciles: maxConcurrent,
		RetryBaseDelay:          retryBase,
		RetryMaxDelay:           retryMax,
	}); err != nil {
		return err
	}
	return mgr.Start(ctx)
}
