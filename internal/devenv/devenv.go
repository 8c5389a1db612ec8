// Package devenv runs autodeploy on one machine with nothing installed: a local control plane
// (kube-apiserver and etcd, the binaries the tests use), the ECS simulator seeded with the
// sample services, and the manager wired to both. With Demo set it applies the sample
// Environments and webhook Notification, sends a signed build manifest, approves it for prod
// with the CLI and shows what happened, while a local webhook receiver prints the
// notifications.
package devenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/controllers"
	"github.com/autodeploy-dev/autodeploy/internal/app"
	"github.com/autodeploy-dev/autodeploy/internal/awsecs"
	"github.com/autodeploy-dev/autodeploy/internal/ecssim"
	"github.com/autodeploy-dev/autodeploy/internal/notification"
	"github.com/autodeploy-dev/autodeploy/internal/receiver"
)

// Options configure Run.
type Options struct {
	// AssetsDir holds kube-apiserver and etcd (KUBEBUILDER_ASSETS).
	AssetsDir string
	// RootDir is the repository root: config/ is read from it.
	RootDir string
	// RunDir receives the kubeconfig, the manifest key and the events key; it is emptied at
	// start.
	RunDir string
	// ReceiverAddr and ECSAddr are where the receiver and the ECS simulator listen.
	ReceiverAddr, ECSAddr string
	// WebhookAddr is where the demo's webhook receiver listens (127.0.0.1:0 when empty).
	WebhookAddr string
	// Namespace receives the sample Environments.
	Namespace string
	// Demo applies the samples, sends a build, approves it for prod and prints the result.
	Demo bool
	// Out receives what a user reads.
	Out io.Writer
	// OnReady, when set, is called once everything runs (and the demo, if any, is done).
	OnReady func(Info)
}

// Info says where the parts of a running environment are.
type Info struct {
	Kubeconfig string
	KeyFile    string
	// EventsKeyFile holds the API key of the EventBridge routes (/v1/events).
	EventsKeyFile string
	// EventsDelivered counts the simulator's ECS events the receiver accepted.
	EventsDelivered func() int
	ReceiverURL     string
	ECSURL          string
	RestConfig      *rest.Config
	// WebhookURL is the demo's webhook receiver, where the webhook Notification posts.
	WebhookURL string
	// Notifications returns what the demo's webhook receiver got (signature verified, each
	// once), in arrival order.
	Notifications func() []notification.Payload
}

// Run starts everything, then blocks until ctx is done and stops it all.
func Run(ctx context.Context, opts Options) (err error) {
	out := opts.Out
	if out == nil {
		out = os.Stdout
	}
	if opts.Namespace == "" {
		opts.Namespace = "default"
	}
	if opts.AssetsDir == "" {
		return errors.New("no control-plane binaries: set KUBEBUILDER_ASSETS (make run builds them into bin/)")
	}
	if err := os.RemoveAll(opts.RunDir); err != nil {
		return err
	}
	if err := os.MkdirAll(opts.RunDir, 0o700); err != nil {
		return err
	}

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(deployv1.AddToScheme(scheme))

	// 1. Control plane.
	fmt.Fprintln(out, "Starting a local control plane (kube-apiserver and etcd) ...")
	cp := &envtest.Environment{
		BinaryAssetsDirectory: opts.AssetsDir,
		CRDDirectoryPaths:     []string{filepath.Join(opts.RootDir, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := cp.Start()
	if err != nil {
		return fmt.Errorf("starting the control plane: %w", err)
	}
	defer func() {
		if stopErr := cp.Stop(); stopErr != nil && err == nil {
			err = stopErr
		}
	}()
	user, err := cp.AddUser(envtest.User{Name: "developer", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return err
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		return err
	}
	info := Info{Kubeconfig: filepath.Join(opts.RunDir, "kubeconfig"), KeyFile: filepath.Join(opts.RunDir, "manifest-key"),
		EventsKeyFile: filepath.Join(opts.RunDir, "events-key"), RestConfig: cfg}
	if err := os.WriteFile(info.Kubeconfig, kubeconfig, 0o600); err != nil {
		return err
	}

	// 2. ECS simulator with the sample services.
	// The simulator's ECS events go to the receiver's /v1/events as an EventBridge rule with an
	// API destination sends them: rollouts end through events, the recommended mode, with no
	// polling.
	poster := &ecssim.EventPoster{Header: receiver.APIKeyHeader, Workers: 1, Backoff: 200 * time.Millisecond, MaxAttempts: 5}
	sim := ecssim.New(ecssim.WithRolloutDuration(3*time.Second), ecssim.WithEventSink(poster.Enqueue))
	seed, err := os.ReadFile(filepath.Join(opts.RootDir, "config", "samples", "ecs-seed.json"))
	if err != nil {
		return err
	}
	if err := sim.LoadSeed(bytes.NewReader(seed)); err != nil {
		return fmt.Errorf("seeding the ECS simulator: %w", err)
	}
	if info.ECSURL, err = sim.StartOn(opts.ECSAddr); err != nil {
		return err
	}
	defer sim.Close()

	// 3. The manager: reconciler and receiver.
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	keyText := []byte(hex.EncodeToString(key))
	if err := os.WriteFile(info.KeyFile, append(keyText, '\n'), 0o600); err != nil {
		return err
	}
	eventsKey := make([]byte, 32)
	if _, err := rand.Read(eventsKey); err != nil {
		return err
	}
	eventsKeyText := []byte(hex.EncodeToString(eventsKey))
	if err := os.WriteFile(info.EventsKeyFile, append(eventsKeyText, '\n'), 0o600); err != nil {
		return err
	}
	poster.APIKey = string(eventsKeyText)
	info.EventsDelivered = poster.Delivered
	ln, err := net.Listen("tcp", opts.ReceiverAddr)
	if err != nil {
		return fmt.Errorf("receiver: %w", err)
	}
	info.ReceiverURL = "http://" + ln.Addr().String()
	poster.SetURL(info.ReceiverURL + receiver.EventsPath)
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		// Run may be called more than once in a process (tests); names stay unique per manager.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		return err
	}
	clients := awsecs.NewFromConfig(aws.Config{Region: "us-east-1", Credentials: aws.AnonymousCredentials{}},
		awsecs.Options{ECS: []func(*ecs.Options){func(o *ecs.Options) { o.BaseEndpoint = aws.String(info.ECSURL) }}})
	mgrCtx, stopMgr := context.WithCancel(ctx)
	defer stopMgr()
	if err := app.Setup(mgrCtx, mgr, app.Options{
		ReceiverListener: ln,
		Keys:             func() [][]byte { return [][]byte{keyText} },
		Receiver:         app.ReceiverOptions{EventKeys: func() [][]byte { return [][]byte{eventsKeyText} }},
		ECS: func(_ context.Context, target deployv1.ECSTarget) (controllers.ECSAPI, error) {
			return clients.For(target.Region, target.RoleARN, target.ExternalID), nil
		},
		RolloutPolling: false,
	}); err != nil {
		return err
	}
	// ECS moves deployments on its own; so does the simulator here, and its events end them.
	go sim.AdvanceRolloutsEvery(mgrCtx, 500*time.Millisecond)
	go poster.Run(mgrCtx)
	mgrDone := make(chan error, 1)
	go func() { mgrDone <- mgr.Start(mgrCtx) }()
	if !mgr.GetCache().WaitForCacheSync(mgrCtx) {
		stopMgr()
		return errors.Join(errors.New("the manager's caches did not sync"), <-mgrDone)
	}

	fmt.Fprintf(out, "\nautodeploy is running.\n  kubeconfig:   %s\n  receiver:     %s/v1/manifests, %s/v1/events\n  ECS endpoint: %s\n  manifest key: %s\n  events key:   %s (ECS events from the simulator end rollouts)\n",
		info.Kubeconfig, info.ReceiverURL, info.ReceiverURL, info.ECSURL, info.KeyFile, info.EventsKeyFile)

	if opts.Demo {
		hookKey := make([]byte, 32)
		if _, err := rand.Read(hookKey); err != nil {
			return err
		}
		hookKey = []byte(hex.EncodeToString(hookKey))
		addr := opts.WebhookAddr
		if addr == "" {
			addr = "127.0.0.1:0"
		}
		hooks, err := startWebhookReceiver(addr, hookKey, out)
		if err != nil {
			stopMgr()
			return errors.Join(err, <-mgrDone)
		}
		defer hooks.close()
		info.WebhookURL, info.Notifications = hooks.url, hooks.notifications
		if err := demo(mgrCtx, out, cfg, scheme, opts, info, keyText, hooks, hookKey); err != nil {
			stopMgr()
			return errors.Join(fmt.Errorf("demo: %w", err), <-mgrDone)
		}
	}
	printNext(out, info)
	if opts.OnReady != nil {
		opts.OnReady(info)
	}

	select {
	case <-ctx.Done():
		fmt.Fprintln(out, "\nStopping ...")
	case err := <-mgrDone:
		return err
	}
	stopMgr()
	return <-mgrDone
}

func printNext(out io.Writer, info Info) {
	fmt.Fprintf(out, `
Try it:
  kubectl --kubeconfig %[1]s get environments -o wide
  go run ./cmd/autodeployctl --kubeconfig %[1]s list
  go run ./cmd/autodeployctl notify --url %[2]s --key-file %[3]s \
      --application shop-api --branch main --build-number 200 \
      --image 123456789012.dkr.ecr.us-east-1.amazonaws.com/shop-api:b200
  go run ./cmd/autodeployctl --kubeconfig %[1]s approve shop-api-prod   # once staging ran build 200
  go run ./cmd/autodeployctl ecs-service --endpoint %[4]s --cluster staging --service shop-api
Press Ctrl-C to stop.
`, info.Kubeconfig, info.ReceiverURL, info.KeyFile, info.ECSURL)
}

// clientFor returns a client of the local control plane.
func clientFor(cfg *rest.Config, scheme *runtime.Scheme) (client.Client, error) {
	return client.New(cfg, client.Options{Scheme: scheme})
}
