// Command autodeployctl is autodeploy's small CLI:
//
//	autodeployctl dev          run everything locally (control plane, ECS simulator, manager) and show a deploy
//	autodeployctl notify       sign and send a build manifest, as a CI system does
//	autodeployctl ecs-service  show what an ECS service runs (task definition, deployments, images)
//	autodeployctl continue     continue the rollout an Environment waits with at a pause hook
//	autodeployctl rollback     roll back the rollout an Environment waits with at a pause hook
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
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/devenv"
	"github.com/autodeploy-dev/autodeploy/internal/hookctl"
	"github.com/autodeploy-dev/autodeploy/internal/manifest"
	"github.com/autodeploy-dev/autodeploy/internal/notify"
	"github.com/autodeploy-dev/autodeploy/internal/receiver"
)

const usage = `Usage: autodeployctl <command> [flags]

Commands:
  dev          Run autodeploy locally: control plane, ECS simulator and manager; shows a deploy.
  notify       Sign and send a build manifest to a receiver.
  ecs-service  Show the task definition, deployments and images of an ECS service.
  continue     Continue the rollout of an Environment waiting at a pause hook: continue <env> [-n ns].
  rollback     Roll back the rollout of an Environment waiting at a pause hook: rollback <env> [-n ns].

Run 'autodeployctl <command> -h' for the flags of a command.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "dev":
		err = runDev(ctx, os.Args[2:])
	case "notify":
		err = runNotify(ctx, os.Args[2:])
	case "ecs-service":
		err = runECSService(ctx, os.Args[2:])
	case "continue":
		err = runHook(ctx, deployv1.HookActionContinue, os.Args[2:])
	case "rollback":
		err = runHook(ctx, deployv1.HookActionRollback, os.Args[2:])
	case "-h", "--help", "help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "autodeployctl:", err)
		os.Exit(1)
	}
}

func runDev(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("dev", flag.ExitOnError)
	root := fs.String("root", ".", "Repository root (config/ is read from it).")
	runDir := fs.String("run-dir", ".run", "Directory for the kubeconfig and the manifest key (emptied at start).")
	receiverAddr := fs.String("receiver-address", "127.0.0.1:9292", "Where the receiver listens.")
	ecsAddr := fs.String("ecs-address", "127.0.0.1:4566", "Where the ECS simulator listens.")
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

func runHook(ctx context.Context, action string, args []string) error {
	fs := flag.NewFlagSet(action, flag.ExitOnError)
	namespace := fs.String("n", "", "Namespace of the Environment (default: the kubeconfig context's).")
	fs.StringVar(namespace, "namespace", "", "Same as -n.")
	kubeconfig := fs.String("kubeconfig", "", "Kubeconfig file (default: $KUBECONFIG, else ~/.kube/config).")
	waitFor := fs.Duration("wait", time.Minute, "How long to wait for the controller's answer (0: do not wait).")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: autodeployctl %s <environment> [-n namespace] [--kubeconfig file] [--wait 1m]\n\n"+
			"Sets %s=%s:<hookID> for the pause hook the Environment's rollout waits at, and shows what became of it.\n",
			action, deployv1.HookActionAnnotation, action)
		fs.PrintDefaults()
	}
	// Flags may come before or after the Environment's name.
	_ = fs.Parse(args)
	name := fs.Arg(0)
	if fs.NArg() > 1 {
		_ = fs.Parse(fs.Args()[1:])
		if fs.NArg() > 0 {
			return fmt.Errorf("unexpected arguments %q: give one Environment", fs.Args())
		}
	}
	if name == "" {
		fs.Usage()
		return errors.New("the Environment's name is required")
	}
	c, ns, err := kubeClient(*kubeconfig, *namespace)
	if err != nil {
		return err
	}
	return hookctl.Answer(ctx, c, types.NamespacedName{Namespace: ns, Name: name}, action, hookctl.Options{Wait: *waitFor}, os.Stdout)
}

// kubeClient returns a client for the kubeconfig (the standard loading rules when empty) and
// the namespace to use: namespace, else the context's.
func kubeClient(kubeconfig, namespace string) (client.Client, string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{Context: clientcmdapi.Context{Namespace: namespace}})
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("kubeconfig: %w", err)
	}
	ns, _, err := cc.Namespace()
	if err != nil {
		return nil, "", fmt.Errorf("kubeconfig: %w", err)
	}
	scheme := runtime.NewScheme()
	if err := deployv1.AddToScheme(scheme); err != nil {
		return nil, "", err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	return c, ns, err
}
