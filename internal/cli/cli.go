// Package cli is the command line for people working with Environments: list, history, pin,
// unpin, retry, approve, continue, rollback and why. It writes through the Kubernetes API
// server as kubectl does (the usual --kubeconfig, --context and -n flags), and runs both as
// autodeployctl and as the kubectl plugin kubectl-autodeploy (`kubectl autodeploy ...`).
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
)

// FieldManager is the field manager of the CLI's writes.
const FieldManager = "autodeployctl"

// PluginBinary is the name kubectl looks up on PATH for `kubectl autodeploy`.
const PluginBinary = "kubectl-autodeploy"

// NameFor returns the command line a binary invoked as argv0 answers to: "kubectl
// autodeploy" for the kubectl plugin binary, else "autodeployctl".
func NameFor(argv0 string) string {
	base := strings.TrimSuffix(filepath.Base(argv0), ".exe")
	if base == PluginBinary {
		return "kubectl autodeploy"
	}
	return "autodeployctl"
}

// IsPlugin reports whether name (from NameFor) is the kubectl plugin's.
func IsPlugin(name string) bool { return strings.HasPrefix(name, "kubectl ") }

// Main runs the command line args (without the program name) for a binary invoked as argv0,
// with extra commands besides the CLI's own, and returns the exit code.
func Main(ctx context.Context, argv0 string, args []string, streams genericiooptions.IOStreams, extra ...*cobra.Command) int {
	name := NameFor(argv0)
	cmd := NewCommand(name, streams)
	cmd.AddCommand(extra...)
	cmd.SetArgs(args)
	if err := cmd.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(streams.ErrOut, "%s: %v\n", strings.ReplaceAll(name, " ", "-"), err)
		return 1
	}
	return 0
}

// NewCommand returns the root command, shown as name ("autodeployctl" or "kubectl
// autodeploy").
func NewCommand(name string, streams genericiooptions.IOStreams) *cobra.Command {
	r := &root{name: name, streams: streams, flags: genericclioptions.NewConfigFlags(true), now: time.Now}
	use := "autodeployctl"
	if IsPlugin(name) {
		use = PluginBinary
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: "Work with autodeploy's Environments: see why each is where it is, pin, approve, retry",
		Long: "Work with autodeploy's Environments through the Kubernetes API server.\n\n" +
			"Environments managed by GitOps (Argo CD, Flux) should be pinned in Git: a pin made here is\n" +
			"undone by the next sync.",
		Annotations:   map[string]string{cobra.CommandDisplayNameAnnotation: name},
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	cmd.SetIn(streams.In)
	cmd.SetOut(streams.Out)
	cmd.SetErr(streams.ErrOut)
	r.flags.AddFlags(cmd.PersistentFlags())
	cmd.AddCommand(r.listCommand(), r.historyCommand(), r.pinCommand(), r.unpinCommand(),
		r.retryCommand(), r.approveCommand(), r.hookCommand(deployv1.HookActionContinue),
		r.hookCommand(deployv1.HookActionRollback), r.whyCommand())
	return cmd
}

type root struct {
	name    string
	streams genericiooptions.IOStreams
	flags   *genericclioptions.ConfigFlags
	now     func() time.Time

	cfg *rest.Config
	c   client.Client
	ns  string
}

func (r *root) out() io.Writer    { return r.streams.Out }
func (r *root) errOut() io.Writer { return r.streams.ErrOut }

// connect builds the client and resolves the namespace (-n, else the context's).
func (r *root) connect() error {
	if r.c != nil {
		return nil
	}
	cfg, err := r.flags.ToRESTConfig()
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	ns, _, err := r.flags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	scheme := runtime.NewScheme()
	if err := deployv1.AddToScheme(scheme); err != nil {
		return err
	}
	if err := authenticationv1.AddToScheme(scheme); err != nil {
		return err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return fmt.Errorf("connecting to the API server: %w", err)
	}
	r.cfg, r.c, r.ns = cfg, c, ns
	return nil
}

func (r *root) key(name string) types.NamespacedName {
	return types.NamespacedName{Namespace: r.ns, Name: name}
}

// getEnv reads the Environment name of the namespace, with an error that says what is wrong.
func (r *root) getEnv(ctx context.Context, name string) (*deployv1.Environment, error) {
	if err := r.connect(); err != nil {
		return nil, err
	}
	env := &deployv1.Environment{}
	if err := r.c.Get(ctx, r.key(name), env); err != nil {
		return nil, r.readError(name, err)
	}
	return env, nil
}

func (r *root) readError(name string, err error) error {
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Errorf("Environment %q not found in namespace %q (list them with `%s list`)", name, r.ns, r.name)
	case meta.IsNoMatchError(err):
		return fmt.Errorf("the cluster has no Environment API (%s): install autodeploy's CRD first", deployv1.GroupVersion)
	case apierrors.IsForbidden(err):
		return fmt.Errorf("not allowed to read Environment %s/%s: %w", r.ns, name, err)
	}
	return fmt.Errorf("reading Environment %s/%s: %w", r.ns, name, err)
}

// patch applies a JSON merge patch to the Environment as FieldManager.
func (r *root) patch(ctx context.Context, env *deployv1.Environment, body []byte) error {
	if err := r.c.Patch(ctx, env, client.RawPatch(types.MergePatchType, body), client.FieldOwner(FieldManager)); err != nil {
		if apierrors.IsInvalid(err) {
			return fmt.Errorf("the API server refused the change to Environment %s/%s: %w", env.Namespace, env.Name, err)
		}
		return fmt.Errorf("patching Environment %s/%s: %w", env.Namespace, env.Name, err)
	}
	return nil
}

// whoAmI returns the user name the API server authenticated this client as.
func (r *root) whoAmI(ctx context.Context) (string, error) {
	review := &authenticationv1.SelfSubjectReview{}
	if err := r.c.Create(ctx, review); err != nil {
		return "", err
	}
	if review.Status.UserInfo.Username == "" {
		return "", errors.New("the API server reported no user name")
	}
	return review.Status.UserInfo.Username, nil
}

// oneEnvironment is the Args check of the commands that act on one Environment.
func oneEnvironment(cmd *cobra.Command, args []string) error {
	switch {
	case len(args) == 0:
		return fmt.Errorf("the Environment's name is required: %s", cmd.UseLine())
	case len(args) > 1:
		return fmt.Errorf("unexpected arguments %q: give one Environment (%s)", args[1:], cmd.UseLine())
	}
	return nil
}

func (r *root) envName(env *deployv1.Environment) string {
	return env.Namespace + "/" + env.Name
}
