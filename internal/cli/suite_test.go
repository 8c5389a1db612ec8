package cli_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/cli"
)

const approver = "alice@example.com"

var (
	k8sClient  client.Client
	kubeconfig string // alice's: a user with a client certificate, in system:masters
	scheme     = runtime.NewScheme()
	nsCounter  atomic.Int64
)

func TestMain(m *testing.M) {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(deployv1.AddToScheme(scheme))
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		fmt.Fprintln(os.Stderr, "KUBEBUILDER_ASSETS is not set: run the tests with `make test`, which builds kube-apiserver and etcd into bin/")
		os.Exit(1)
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting envtest:", err)
		os.Exit(1)
	}
	code := func() int {
		defer func() {
			if err := env.Stop(); err != nil {
				fmt.Fprintln(os.Stderr, "stopping envtest:", err)
			}
		}()
		if k8sClient, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
			fmt.Fprintln(os.Stderr, "client:", err)
			return 1
		}
		user, err := env.AddUser(envtest.User{Name: approver, Groups: []string{"system:masters"}}, nil)
		if err != nil {
			fmt.Fprintln(os.Stderr, "adding a user:", err)
			return 1
		}
		raw, err := user.KubeConfig()
		if err != nil {
			fmt.Fprintln(os.Stderr, "kubeconfig:", err)
			return 1
		}
		dir, err := os.MkdirTemp("", "autodeployctl-test")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		kubeconfig = filepath.Join(dir, "kubeconfig")
		if err := os.WriteFile(kubeconfig, raw, 0o600); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

// newNamespace creates a namespace of its own for a test.
func newNamespace(t *testing.T) string {
	t.Helper()
	ns := fmt.Sprintf("cli-%d", nsCounter.Add(1))
	NewWithT(t).Expect(k8sClient.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
	return ns
}

// newEnv creates an Environment, then writes its status as the controller would.
func newEnv(t *testing.T, ns, name string, spec func(*deployv1.Environment), status func(*deployv1.EnvironmentStatus), opts ...client.CreateOption) *deployv1.Environment {
	t.Helper()
	g := NewWithT(t)
	env := &deployv1.Environment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: deployv1.EnvironmentSpec{
			Application: "shop-api", AutoDeploy: true,
			ECS: deployv1.ECSTarget{Region: "us-east-1", Cluster: "prod", Service: name, Container: "web"},
		},
	}
	if spec != nil {
		spec(env)
	}
	ctx := context.Background()
	g.Expect(k8sClient.Create(ctx, env, opts...)).To(Succeed())
	if status != nil {
		status(&env.Status)
		g.Expect(k8sClient.Status().Update(ctx, env)).To(Succeed())
	}
	return env
}

func get(t *testing.T, ns, name string) *deployv1.Environment {
	t.Helper()
	env := &deployv1.Environment{}
	NewWithT(t).Expect(k8sClient.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, env)).To(Succeed())
	return env
}

type result struct {
	out, err string
	code     int
}

// run runs the CLI in process as the binary argv0, as alice, with args.
func runAs(argv0 string, args ...string) result {
	return runRaw(argv0, append(args, "--kubeconfig", kubeconfig)...)
}

// runRaw runs the CLI in process as the binary argv0 with exactly args.
func runRaw(argv0 string, args ...string) result {
	var out, errOut bytes.Buffer
	streams := genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}
	code := cli.Main(context.Background(), argv0, args, streams)
	return result{out: out.String(), err: errOut.String(), code: code}
}

func run(args ...string) result { return runAs("autodeployctl", args...) }

func ready(status metav1.ConditionStatus, reason, msg string) []metav1.Condition {
	now := metav1.Now()
	stalled := metav1.ConditionFalse
	if reason == deployv1.ReasonRolloutFailed {
		stalled = metav1.ConditionTrue
	}
	return []metav1.Condition{
		{Type: deployv1.ReadyCondition, Status: status, Reason: reason, Message: msg, LastTransitionTime: now},
		{Type: deployv1.StalledCondition, Status: stalled, Reason: reason, Message: msg, LastTransitionTime: now},
	}
}

func build(n int64, image string) *deployv1.Build {
	return &deployv1.Build{Application: "shop-api", Source: deployv1.SourceManifest, ID: fmt.Sprintf("shop-api:%d", n), Number: n, Image: image, ReceivedAt: metav1.Now()}
}

func ref(n int64) *deployv1.BuildRef {
	return &deployv1.BuildRef{Application: "shop-api", Source: deployv1.SourceManifest, ID: fmt.Sprintf("shop-api:%d", n), Number: n}
}
