package devenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/controllers"
	"github.com/autodeploy-dev/autodeploy/internal/manifest"
	"github.com/autodeploy-dev/autodeploy/internal/notify"
)

// DemoBuild is the build the demo sends.
var DemoBuild = manifest.Manifest{
	Application: "shop-api",
	BuildID:     "shop-api:demo-143",
	BuildNumber: 143,
	Image:       "123456789012.dkr.ecr.us-east-1.amazonaws.com/shop-api:v1.5.0",
	Commit:      "3f2c9e1",
	Branch:      "main",
}

func demo(ctx context.Context, out io.Writer, cfg *rest.Config, scheme *runtime.Scheme, opts Options, info Info, key []byte) error {
	c, err := clientFor(cfg, scheme)
	if err != nil {
		return err
	}
	names, err := applySamples(ctx, c, filepath.Join(opts.RootDir, "config", "samples", "deploy_v1alpha1_environment.yaml"), opts.Namespace)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nApplied the sample Environments (config/samples) in namespace %q.\n", opts.Namespace)
	// Wait for the first reconcile of each: the pinned one deploys its pin.
	if err := waitFor(ctx, c, opts.Namespace, names, func(e *deployv1.Environment) bool {
		return e.Status.ObservedGeneration == e.Generation
	}); err != nil {
		return err
	}
	if err := printEnvironments(ctx, out, cfg, opts.Namespace); err != nil {
		return err
	}

	b := DemoBuild
	finished := time.Now().UTC().Truncate(time.Second)
	b.FinishedAt = &finished
	fmt.Fprintf(out, "\nA build finished: sending the signed manifest of build %d (%s) to the receiver ...\n", b.BuildNumber, b.Image)
	reply, err := notify.Send(ctx, http.DefaultClient, info.ReceiverURL, key, &b, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "Receiver answered %d: %s\n", reply.Status, reply.Body)
	if !reply.OK() {
		return fmt.Errorf("the receiver refused the demo build: %d %s", reply.Status, reply.Body)
	}

	// Every Environment records the build; the unpinned ones deploy it and ECS rolls it out.
	fmt.Fprintln(out, "Waiting for the ECS rollout to complete (the simulator takes 3 s; its ECS event ends it) ...")
	if err := waitFor(ctx, c, opts.Namespace, names, func(e *deployv1.Environment) bool {
		if e.Status.LatestBuild == nil || e.Status.LatestBuild.Number != b.BuildNumber {
			return false
		}
		want := controllers.Decide(e).Image
		last := e.Status.LastDeploy()
		rolledOut := last == nil || last.Result != deployv1.ResultInProgress
		return e.Status.PendingDeploy == nil && e.Status.DesiredImage == want && e.Status.DeployedImage == want && rolledOut
	}); err != nil {
		return err
	}
	if info.EventsDelivered != nil {
		fmt.Fprintf(out, "The receiver accepted %d ECS event(s) at %s/v1/events (no polling).\n", info.EventsDelivered(), info.ReceiverURL)
	}
	fmt.Fprintln(out, "\nAfter the build (the unpinned Environment deployed it, the pinned one only recorded it):")
	if err := printEnvironments(ctx, out, cfg, opts.Namespace); err != nil {
		return err
	}
	fmt.Fprintln(out, "\nWhat the ECS simulator's services run now:")
	list := &deployv1.EnvironmentList{}
	if err := c.List(ctx, list, client.InNamespace(opts.Namespace)); err != nil {
		return err
	}
	api := ECSClient(info.ECSURL)
	for _, e := range list.Items {
		if err := PrintService(ctx, out, api, e.Spec.ECS.Cluster, e.Spec.ECS.Service); err != nil {
			return err
		}
	}
	return nil
}

// applySamples creates the Environments in path in namespace and returns their names.
func applySamples(ctx context.Context, c client.Client, path, namespace string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	dec := yaml.NewYAMLOrJSONDecoder(f, 4096)
	var names []string
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if len(u.Object) == 0 {
			continue
		}
		u.SetNamespace(namespace)
		if err := c.Create(ctx, u); err != nil {
			return nil, fmt.Errorf("creating %s %s: %w", u.GetKind(), u.GetName(), err)
		}
		names = append(names, u.GetName())
	}
	return names, nil
}

func waitFor(ctx context.Context, c client.Client, namespace string, names []string, done func(*deployv1.Environment) bool) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		for _, n := range names {
			e := &deployv1.Environment{}
			if err := c.Get(ctx, types.NamespacedName{Namespace: namespace, Name: n}, e); err != nil {
				return false, client.IgnoreNotFound(err)
			}
			if !done(e) {
				return false, nil
			}
		}
		return true, nil
	})
}
