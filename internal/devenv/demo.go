package devenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/cli"
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

// The sample Environments and Notification the demo applies.
const (
	stagingName      = "shop-api-staging"
	prodName         = "shop-api-prod"
	webhookName      = "deploys-to-webhook"
	webhookSecret    = "deploy-webhook"
	demoCLIName      = "autodeployctl"
	demoWebhookTitle = "[webhook]"
)

func demo(ctx context.Context, out io.Writer, cfg *rest.Config, scheme *runtime.Scheme, opts Options, info Info, key []byte, hooks *webhookReceiver, hookKey []byte) error {
	c, err := clientFor(cfg, scheme)
	if err != nil {
		return err
	}
	ns := opts.Namespace
	samples := filepath.Join(opts.RootDir, "config", "samples")

	// The webhook Notification first, so that it tells everything that follows.
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: webhookSecret},
		Data: map[string][]byte{deployv1.SecretKeyHMAC: hookKey}}
	if err := c.Create(ctx, secret); err != nil {
		return fmt.Errorf("creating Secret %s: %w", webhookSecret, err)
	}
	if _, err := applySamples(ctx, c, filepath.Join(samples, "deploy_v1alpha1_notification.yaml"), ns, func(u *unstructured.Unstructured) bool {
		if u.GetKind() != "Notification" || u.GetName() != webhookName {
			return false
		}
		return unstructured.SetNestedField(u.Object, hooks.url, "spec", "provider", "address") == nil
	}); err != nil {
		return err
	}
	fmt.Fprintf(out, "\nApplied the sample Notification %s (provider webhook; the Environments labelled\n"+
		"app.kubernetes.io/part-of=shop-api), its key in Secret %s, its address pointed at a local\n"+
		"webhook receiver, %s, which checks each signature with manifest.Verify and\n"+
		"prints each notification once, as a %s line.\n\n", webhookName, webhookSecret, hooks.url, demoWebhookTitle)

	names, err := applySamples(ctx, c, filepath.Join(samples, "deploy_v1alpha1_environment.yaml"), ns, nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "Applied the sample Environments in namespace %q: %s deploys every build of main;\n"+
		"%s deploys a build once it completed on staging (spec.promotion) and a person\n"+
		"approved it (spec.approval: Required).\n", ns, stagingName, prodName)
	if err := waitFor(ctx, c, ns, names, func(e *deployv1.Environment) bool {
		return e.Status.ObservedGeneration == e.Generation
	}); err != nil {
		return err
	}
	if err := printEnvironments(ctx, out, cfg, ns); err != nil {
		return err
	}

	b := DemoBuild
	finished := time.Now().UTC().Truncate(time.Second)
	b.FinishedAt = &finished
	fmt.Fprintf(out, "\nA build finished: sending the signed manifest of build %d (%s) to the receiver ...\n", b.BuildNumber, shortImages(b.Image))
	reply, err := notify.Send(ctx, http.DefaultClient, info.ReceiverURL, key, &b, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "Receiver answered %d: %s\n", reply.Status, reply.Body)
	if !reply.OK() {
		return fmt.Errorf("the receiver refused the demo build: %d %s", reply.Status, reply.Body)
	}

	// Staging deploys the build; prod waits at its gates, first for staging's rollout.
	fmt.Fprintln(out, "Staging deploys it (the simulator's rollout takes 3 s; its ECS event ends it); prod waits:")
	var prod *deployv1.Environment
	shown := ""
	if err := waitFor(ctx, c, ns, []string{prodName}, func(e *deployv1.Environment) bool {
		g := e.Status.Gate
		if g == nil || g.Build == nil || g.Build.Number != b.BuildNumber {
			return false
		}
		if g.Reason != shown {
			shown = g.Reason
			fmt.Fprintf(out, "  %s: %s: %s\n", prodName, g.Reason, shortImages(g.Message))
		}
		prod = e
		return g.Reason == deployv1.ReasonAwaitingApproval
	}); err != nil {
		return fmt.Errorf("%s did not come to wait for approval of build %d: %w", prodName, b.BuildNumber, err)
	}
	fmt.Fprintf(out, "\nStaging deployed build %d; prod waits for a person:\n", b.BuildNumber)
	if err := printEnvironments(ctx, out, cfg, ns); err != nil {
		return err
	}
	if err := runCLI(ctx, out, info, ns, "why", prodName); err != nil {
		return err
	}

	// A person approves, as anyone would: the CLI learns who they are from the API server and
	// sets the approve and approved-by annotations in one patch.
	fmt.Fprintln(out)
	if err := runCLI(ctx, out, info, ns, "approve", prodName); err != nil {
		return err
	}
	fmt.Fprintln(out, "Waiting for prod's rollout to complete ...")
	if err := waitFor(ctx, c, ns, names, func(e *deployv1.Environment) bool {
		last := e.Status.LastDeploy()
		return e.Status.PendingDeploy == nil && e.Status.DeployedBuild != nil && e.Status.DeployedBuild.Number == b.BuildNumber &&
			last != nil && last.Result != deployv1.ResultInProgress
	}); err != nil {
		return err
	}
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: prodName}, prod); err != nil {
		return err
	}
	if last := prod.Status.LastDeploy(); last != nil && last.Approval != nil {
		fmt.Fprintf(out, "%s deployed build %d; its history entry records the approval: build %d by %s.\n",
			prodName, b.BuildNumber, last.Approval.Build, last.Approval.By)
	}
	if info.EventsDelivered != nil {
		fmt.Fprintf(out, "The receiver accepted %d ECS event(s) at %s/v1/events (no polling).\n", info.EventsDelivered(), info.ReceiverURL)
	}
	// The webhook hears of the completed rollouts shortly after the status says so.
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		return hooks.has(stagingName, deployv1.OutcomeRolloutCompleted, b.BuildNumber) &&
			hooks.has(prodName, deployv1.OutcomeRolloutCompleted, b.BuildNumber), nil
	}); err != nil {
		return fmt.Errorf("the webhook receiver was not told of the completed rollouts of build %d: %w", b.BuildNumber, err)
	}

	fmt.Fprintln(out, "\nAfter the build (staging deployed it at once, prod after its approval):")
	if err := printEnvironments(ctx, out, cfg, ns); err != nil {
		return err
	}
	fmt.Fprintln(out, "\nWhat the ECS simulator's services run now:")
	api := ECSClient(info.ECSURL)
	for _, n := range []string{prodName, stagingName} {
		e := &deployv1.Environment{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: n}, e); err != nil {
			return err
		}
		if err := PrintService(ctx, out, api, e.Spec.ECS.Cluster, e.Spec.ECS.Service); err != nil {
			return err
		}
	}
	return nil
}

// runCLI runs an autodeployctl command against the local control plane, as a person would
// with the printed kubeconfig, and prints the command line and its output.
func runCLI(ctx context.Context, out io.Writer, info Info, namespace string, args ...string) error {
	var stdout, stderr bytes.Buffer
	streams := genericiooptions.IOStreams{In: strings.NewReader(""), Out: &stdout, ErrOut: &stderr}
	full := append([]string{"--kubeconfig", info.Kubeconfig, "-n", namespace}, args...)
	fmt.Fprintf(out, "$ %s %s\n", demoCLIName, strings.Join(args, " "))
	code := cli.Main(ctx, demoCLIName, full, streams)
	if _, err := io.WriteString(out, indent(wrap(stdout.String()+stderr.String(), 96), "  ")); err != nil {
		return err
	}
	if code != 0 {
		return fmt.Errorf("%s %s failed: %s", demoCLIName, strings.Join(args, " "), strings.TrimSpace(stderr.String()))
	}
	return nil
}

// wrap breaks the lines of s longer than width at spaces, and shortens the images in them.
func wrap(s string, width int) string {
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimRight(shortImages(s), "\n"), "\n") {
		n := 0
		for i, w := range strings.Fields(line) {
			if i > 0 && n+1+len(w) > width {
				b.WriteString("\n")
				n = 0
			} else if i > 0 {
				b.WriteString(" ")
				n++
			}
			b.WriteString(w)
			n += len(w)
		}
		b.WriteString("\n")
	}
	return b.String()
}

func indent(s, prefix string) string {
	lines := strings.SplitAfter(s, "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = prefix + l
		}
	}
	return strings.Join(lines, "")
}

// applySamples creates the objects in path in namespace and returns their names. With keep
// set, only the objects it keeps (and may change) are created.
func applySamples(ctx context.Context, c client.Client, path, namespace string, keep func(*unstructured.Unstructured) bool) ([]string, error) {
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
		if keep != nil && !keep(u) {
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
