// Command autodeployctl is autodeploy's small CLI:
//
//	autodeployctl dev          run everything locally (control plane, ECS simulator, manager) and show a deploy
//	autodeployctl notify       sign and send a build manifest, as a CI system does
//	autodeployctl ecs-service  show what an ECS service runs (task definition, deployments, images)
//	autodeployctl list         list Environments and the reason each is where it is
//	autodeployctl history      show an Environment's deploys
//	autodeployctl pin, unpin   pin an Environment to an image or a build, and remove the pin
//	autodeployctl retry        retry a failed deploy once
//	autodeployctl approve      approve the waiting build, or continue a pause hook
//	autodeployctl continue     continue the rollout an Environment waits with at a pause hook
//	autodeployctl rollback     roll back the rollout an Environment waits with at a pause hook
//	autodeployctl why          explain in one paragraph why an Environment is where it is
//
// The same binary named kubectl-autodeploy is the kubectl plugin (`kubectl autodeploy ...`);
// see also cmd/kubectl-autodeploy.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/autodeploy-dev/autodeploy/internal/cli"
	"github.com/autodeploy-dev/autodeploy/internal/devenv"
	"github.com/autodeploy-dev/autodeploy/internal/manifest"
	"github.com/autodeploy-dev/autodeploy/internal/notify"
	"github.com/autodeploy-dev/autodeploy/internal/receiver"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	streams := genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}
	var extra []*cobra.Command
	// Installed as kubectl-autodeploy, the binary is the kubectl plugin: the CLI's commands
	// only. As autodeployctl it also runs the local run and the senders.
	if !cli.IsPlugin(cli.NameFor(os.Args[0])) {
		extra = []*cobra.Command{
			passThrough("dev", "Run autodeploy locally: control plane, ECS simulator and manager; shows a deploy", runDev),
			passThrough("notify", "Sign and send a build manifest to a receiver, as a CI system does", runNotify),
			passThrough("ecs-service", "Show the task definition, deployments and images of an ECS service", runECSService),
		}
	}
	code := cli.Main(ctx, os.Args[0], os.Args[1:], streams, extra...)
	stop()
	os.Exit(code)
}

// passThrough is a command that parses its own flags (the standard flag package).
func passThrough(name, short string, run func(context.Context, []string) error) *cobra.Command {
	return &cobra.Command{
		Use:                name + " [flags]",
		Short:              short,
		DisableFlagParsing: true,
		RunE:               func(cmd *cobra.Command, args []string) error { return run(cmd.Context(), args) },
	}
}

func runDev(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("dev", flag.ExitOnError)
	root := fs.String("root", ".", "Repository root (config/ is read from it).")
	runDir := fs.String("run-dir", ".run", "Directory for the kubeconfig and the manifest key (emptied at start).")
	receiverAddr := fs.String("receiver-address", "127.0.0.1:9292", "Where the receiver listens.")
	ecsAddr := fs.String("ecs-address", "127.0.0.1:4566", "Where the ECS simulator listens.")
	webhookAddr := fs.String("webhook-address", "127.0.0.1:9393", "Where the demo's webhook receiver (the endpoint of its webhook Notification) listens.")
	namespace := fs.String("namespace", "default", "Namespace for the sample Environments.")
	noDemo := fs.Bool("no-demo", false, "Do not apply the samples or send the demo build.")
	verbose := fs.Bool("v", false, "Show the manager's logs.")
	_ = fs.Parse(args)
	if *verbose {
		ctrl.SetLogger(zap.New(zap.UseDevMode(true)))
	} else {
		ctrl.SetLogger(logr.Discard())
	}
	absRoot, err := filepath.Abs(*root)
	if err != nil {
		return err
	}
	return devenv.Run(ctx, devenv.Options{
		AssetsDir:    os.Getenv("KUBEBUILDER_ASSETS"),
		RootDir:      absRoot,
		RunDir:       *runDir,
		ReceiverAddr: *receiverAddr,
		ECSAddr:      *ecsAddr,
		WebhookAddr:  *webhookAddr,
		Namespace:    *namespace,
		Demo:         !*noDemo,
		Out:          os.Stdout,
	})
}

func runNotify(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("notify", flag.ExitOnError)
	url := fs.String("url", "http://127.0.0.1:9292", "Receiver base URL.")
	keyFile := fs.String("key-file", ".run/manifest-key", "File holding the signing key (the first key is used).")
	namespace := fs.String("namespace", "", "Send to this namespace's route, signed with its key (default: the cluster-wide route).")
	var m manifest.Manifest
	fs.StringVar(&m.Application, "application", "", "Application name (required).")
	fs.StringVar(&m.BuildID, "build-id", "", "Build id (default: <application>:<build-number>).")
	fs.Int64Var(&m.BuildNumber, "build-number", 0, "Build number (required).")
	fs.StringVar(&m.Image, "image", "", "Image reference (required).")
	fs.StringVar(&m.Commit, "commit", "", "Source revision.")
	fs.StringVar(&m.Branch, "branch", "", "Source branch.")
	_ = fs.Parse(args)
	if m.BuildID == "" && m.Application != "" {
		m.BuildID = fmt.Sprintf("%s:%d", m.Application, m.BuildNumber)
	}
	now := time.Now().UTC().Truncate(time.Second)
	m.FinishedAt = &now
	raw, err := os.ReadFile(*keyFile)
	if err != nil {
		return err
	}
	keys, err := receiver.ParseKeys(raw)
	if err != nil {
		return fmt.Errorf("%s: %w", *keyFile, err)
	}
	reply, err := notify.SendTo(ctx, &http.Client{Timeout: 30 * time.Second}, *url, *namespace, keys[0], &m, time.Now())
	if err != nil {
		return err
	}
	fmt.Printf("%d %s\n", reply.Status, reply.Body)
	if !reply.OK() {
		return errors.New("the receiver did not accept the manifest")
	}
	return nil
}

func runECSService(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("ecs-service", flag.ExitOnError)
	endpoint := fs.String("endpoint", "http://127.0.0.1:4566", "ECS endpoint (the simulator).")
	cluster := fs.String("cluster", "", "Cluster (required).")
	service := fs.String("service", "", "Service (required).")
	_ = fs.Parse(args)
	if strings.TrimSpace(*cluster) == "" || strings.TrimSpace(*service) == "" {
		return errors.New("--cluster and --service are required")
	}
	return devenv.PrintService(ctx, os.Stdout, devenv.ECSClient(*endpoint), *cluster, *service)
}
