package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/controllers"
	"github.com/autodeploy-dev/autodeploy/internal/app"
	"github.com/autodeploy-dev/autodeploy/internal/awsecs"
	"github.com/autodeploy-dev/autodeploy/internal/ecssim"
	"github.com/autodeploy-dev/autodeploy/internal/manifest"
)

var (
	// testEnv is the envtest environment (its AddUser makes users the API server authenticates).
	testEnv    *envtest.Environment
	restConfig *rest.Config
	k8sClient  client.Client
	scheme     = runtime.NewScheme()
	nsCounter  atomic.Int64
)

var testKey = []byte("test-manifest-key-0123456789")

func TestMain(m *testing.M) {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(deployv1.AddToScheme(scheme))
	if os.Getenv("TEST_VERBOSE_LOGS") != "" {
		logf.SetLogger(zap.New(zap.UseDevMode(true)))
	} else {
		logf.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	}

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
	restConfig, testEnv = cfg, env
	k8sClient, err = client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		fmt.Fprintln(os.Stderr, "client:", err)
		os.Exit(1)
	}
	code := m.Run()
	if err := env.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping envtest:", err)
	}
	os.Exit(code)
}

// harness is one test's world: a namespace, an ECS simulator and (when started) a manager.
type harness struct {
	t      testing.TB
	g      *WithT
	ns     string
	sim    *ecssim.Server
	simURL string
	mgr    *runningManager
	keys   atomic.Pointer[[][]byte]
	// budget is the client-side ECS rate budget; noPolling turns the rollout tracker off.
	budget        map[awsecs.Category]awsecs.Bucket
	noPolling     bool
	maxConcurrent int
	// receiverOpts adjust the receiver's options (receiver_helpers_test.go); extraNS are more
	// namespaces the manager watches (tenants); eventKeys are the cluster-wide EventBridge keys.
	receiverOpts []func(*app.ReceiverOptions)
	extraNS      []string
	eventKeys    atomic.Pointer[[][]byte]
	// appOpts adjust the manager's options before each start.
	appOpts []func(*app.Options)
	// now is the reconciler's clock (time.Now when nil).
	now func() time.Time
	// monitored runs the manager as cmd/manager does for Prometheus: metrics served over HTTP,
	// leader election on, the Environment collector registered (monitoring_test.go).
	monitored bool
}

type runningManager struct {
	cancel      context.CancelFunc
	done        chan error
	receiverURL string
	// metricsURL is the manager's metrics endpoint when the harness is monitored.
	metricsURL string
	unregister func()
}

type harnessOption func(*harnessConfig)

type harnessConfig struct {
	simOpts       []ecssim.Option
	budget        map[awsecs.Category]awsecs.Bucket
	noPolling     bool
	maxConcurrent int
	receiver      []func(*app.ReceiverOptions)
	now           func() time.Time
	monitored     bool
}

// withClock gives the reconciler a clock of the test's own.
func withClock(now func() time.Time) harnessOption {
	return func(c *harnessConfig) { c.now = now }
}

// withMaxConcurrent sets how many Environments the reconciler deploys at once.
func withMaxConcurrent(n int) harnessOption {
	return func(c *harnessConfig) { c.maxConcurrent = n }
}

// withBudget sets the client-side ECS rate budget (none by default, so that tests of the
// simulator's throttling see it throttle).
func withBudget(b map[awsecs.Category]awsecs.Bucket) harnessOption {
	return func(c *harnessConfig) { c.budget = b }
}

// withoutPolling leaves rollouts to ECS events.
func withoutPolling() harnessOption {
	return func(c *harnessConfig) { c.noPolling = true }
}

func withSim(opts ...ecssim.Option) harnessOption {
	return func(c *harnessConfig) { c.simOpts = append(c.simOpts, opts...) }
}

func newHarness(t testing.TB, opts ...harnessOption) *harness {
	t.Helper()
	var hc harnessConfig
	for _, o := range opts {
		o(&hc)
	}
	g := NewWithT(t)
	if hc.budget == nil {
		hc.budget = map[awsecs.Category]awsecs.Bucket{}
	}
	h := &harness{t: t, g: g, budget: hc.budget, noPolling: hc.noPolling, maxConcurrent: hc.maxConcurrent, ns: fmt.Sprintf("t%d-%s", nsCounter.Add(1), strings.ToLower(strings.ReplaceAll(t.Name(), "_", "-")))}
	h.receiverOpts = hc.receiver
	h.now = hc.now
	h.monitored = hc.monitored
	if len(h.ns) > 60 {
		h.ns = h.ns[:60]
	}
	h.ns = strings.Trim(strings.Map(func(r rune) rune {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '-' {
			return r
		}
		return '-'
	}, h.ns), "-")
	keys := [][]byte{testKey}
	h.keys.Store(&keys)
	g.Expect(k8sClient.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: h.ns}})).To(Succeed())

	h.sim = ecssim.New(hc.simOpts...)
	url, err := h.sim.Start()
	g.Expect(err).NotTo(HaveOccurred())
	h.simURL = url
	t.Cleanup(func() {
		h.stopManager()
		h.sim.Close()
	})
	return h
}

// seedService creates cluster/service running a two-container task definition (web + sidecar)
// with the given web image, and returns the family.
func (h *harness) seedService(cluster, service, image string) string {
	h.t.Helper()
	return h.seedServiceIn(h.sim.DefaultAccount(), cluster, service, image)
}

// seedServiceIn seeds the service in one account of the simulator.
func (h *harness) seedServiceIn(acct *ecssim.AccountView, cluster, service, image string) string {
	h.t.Helper()
	return h.seedTaskService(acct, cluster, service, map[string]any{
		"taskRoleArn":             "arn:aws:iam::123456789012:role/" + service + "-task",
		"executionRoleArn":        "arn:aws:iam::123456789012:role/ecsTaskExecutionRole",
		"networkMode":             "awsvpc",
		"requiresCompatibilities": []string{"FARGATE"},
		"cpu":                     "256",
		"memory":                  "512",
		"runtimePlatform":         map[string]any{"cpuArchitecture": "ARM64", "operatingSystemFamily": "LINUX"},
		"ephemeralStorage":        map[string]any{"sizeInGiB": 30},
		"volumes":                 []any{map[string]any{"name": "scratch"}},
		"containerDefinitions": []any{
			map[string]any{
				"name":         "web",
				"image":        image,
				"essential":    true,
				"portMappings": []any{map[string]any{"containerPort": 8080, "protocol": "tcp"}},
				"environment":  []any{map[string]any{"name": "MODE", "value": "prod"}},
				"secrets":      []any{map[string]any{"name": "DB_PASSWORD", "valueFrom": "arn:aws:secretsmanager:us-east-1:123456789012:secret:db"}},
				"mountPoints":  []any{map[string]any{"sourceVolume": "scratch", "containerPath": "/scratch"}},
				"logConfiguration": map[string]any{"logDriver": "awslogs", "options": map[string]any{
					"awslogs-group": "/ecs/" + service, "awslogs-region": "us-east-1", "awslogs-stream-prefix": "web"}},
			},
			map[string]any{
				"name":                  "log-router",
				"image":                 "public.ecr.aws/aws-observability/aws-for-fluent-bit:2.32.0",
				"essential":             false,
				"firelensConfiguration": map[string]any{"type": "fluentbit"},
			},
		},
		"tags": []any{map[string]any{"key": "team", "value": "shop"}},
	})
}

// seedTaskService creates cluster/service with two tasks of task definition td, whose family
// it sets to cluster-service, and returns the family.
func (h *harness) seedTaskService(acct *ecssim.AccountView, cluster, service string, td map[string]any) string {
	h.t.Helper()
	family := cluster + "-" + service
	_ = acct.SeedCluster(cluster)
	td["family"] = family
	raw, err := json.Marshal(td)
	h.g.Expect(err).NotTo(HaveOccurred())
	_, err = acct.SeedTaskDefinition(raw)
	h.g.Expect(err).NotTo(HaveOccurred())
	h.g.Expect(acct.SeedService(cluster, service, family, 2)).To(Succeed())
	return family
}

// fleet seeds n services of cluster prod running v1, each with an Environment of its name
// (svc-0000, svc-0001, ...), adjusted by mutate when set, and returns the names.
func (h *harness) fleet(n int, mutate func(i int, e *deployv1.Environment)) []string {
	h.t.Helper()
	names := make([]string, n)
	for i := range n {
		svc := fmt.Sprintf("svc-%04d", i)
		names[i] = svc
		h.seedService("prod", svc, image("v1"))
		h.createEnv(svc, func(e *deployv1.Environment) {
			e.Spec.ECS.Service = svc
			if mutate != nil {
				mutate(i, e)
			}
		})
	}
	return names
}

// ecsClients returns the production client factory pointed at the simulator through the real
// SDK, with short SDK backoffs so that retry tests stay quick.
func (h *harness) ecsClients() controllers.ECSClientFunc {
	cfg := aws.Config{
		Region:      "us-east-1",
		Credentials: aws.AnonymousCredentials{},
		Retryer: func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) { o.MaxBackoff = 20 * time.Millisecond })
		},
	}
	clients := awsecs.NewFromConfig(cfg, awsecs.Options{
		Limits: h.budget,
		ECS:    []func(*ecs.Options){func(o *ecs.Options) { o.BaseEndpoint = aws.String(h.simURL) }},
		STS:    []func(*sts.Options){func(o *sts.Options) { o.BaseEndpoint = aws.String(h.simURL) }},
	})
	return func(_ context.Context, target deployv1.ECSTarget) (controllers.ECSAPI, error) {
		return clients.For(target.Region, target.RoleARN, target.ExternalID), nil
	}
}

// startManager starts the manager (reconciler and receiver) the way cmd/manager does, watching
// only this test's namespace.
func (h *harness) startManager() {
	h.t.Helper()
	h.g.Expect(h.mgr).To(BeNil(), "manager already running")
	mgrOpts := ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  app.CacheOptions(h.cacheNamespaces()),
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	}
	if h.monitored {
		h.monitorOptions(&mgrOpts)
	}
	mgr, err := ctrl.NewManager(restConfig, mgrOpts)
	h.g.Expect(err).NotTo(HaveOccurred())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	h.g.Expect(err).NotTo(HaveOccurred())
	ctx, cancel := context.WithCancel(context.Background())
	opts := app.Options{
		ReceiverListener:        ln,
		Keys:                    func() [][]byte { return *h.keys.Load() },
		Receiver:                h.receiverOptions(),
		ECS:                     h.ecsClients(),
		RetryBaseDelay:          20 * time.Millisecond,
		RetryMaxDelay:           500 * time.Millisecond,
		RolloutPolling:          !h.noPolling,
		MaxConcurrentReconciles: h.maxConcurrent,
		Now:                     h.now,
		// The simulator's default account, where Environments without a role deploy.
		Account: h.sim.DefaultAccount().ID(),
		// Short intervals keep the tests quick; the doubling is the production behaviour.
		RolloutPollInterval:    50 * time.Millisecond,
		RolloutPollMaxInterval: 400 * time.Millisecond,
	}
	for _, adjust := range h.appOpts {
		adjust(&opts)
	}
	h.g.Expect(app.Setup(ctx, mgr, opts)).To(Succeed())
	rm := &runningManager{cancel: cancel, done: make(chan error, 1), receiverURL: "http://" + ln.Addr().String()}
	if h.monitored {
		rm.metricsURL, rm.unregister = h.monitor(mgr, mgrOpts)
	}
	go func() { rm.done <- mgr.Start(ctx) }()
	h.mgr = rm
	h.g.Eventually(func() error {
		resp, err := http.Get(rm.receiverURL + "/v1/manifests")
		if err == nil {
			resp.Body.Close()
		}
		return err
	}, timeout, poll).Should(Succeed())
	h.g.Expect(mgr.GetCache().WaitForCacheSync(ctx)).To(BeTrue())
}

func (h *harness) stopManager() {
	if h.mgr == nil {
		return
	}
	h.mgr.cancel()
	select {
	case err := <-h.mgr.done:
		h.g.Expect(err).NotTo(HaveOccurred())
	case <-time.After(30 * time.Second):
		h.t.Error("manager did not stop within 30s")
	}
	if h.mgr.unregister != nil {
		h.mgr.unregister()
	}
	h.mgr = nil
}

func (h *harness) createEnv(name string, mutate func(*deployv1.Environment)) *deployv1.Environment {
	h.t.Helper()
	env := &deployv1.Environment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: h.ns},
		Spec: deployv1.EnvironmentSpec{
			Application: "shop-api",
			Branch:      "main",
			AutoDeploy:  true,
			ECS:         deployv1.ECSTarget{Region: "us-east-1", Cluster: "prod", Service: "shop-api", Container: "web"},
		},
	}
	if mutate != nil {
		mutate(env)
	}
	h.g.Expect(k8sClient.Create(context.Background(), env)).To(Succeed())
	return env
}

func (h *harness) getEnv(name string) *deployv1.Environment {
	h.t.Helper()
	env := &deployv1.Environment{}
	h.g.Expect(k8sClient.Get(context.Background(), types.NamespacedName{Namespace: h.ns, Name: name}, env)).To(Succeed())
	return env
}

// env returns a function for Eventually that fetches the Environment.
func (h *harness) env(name string) func() *deployv1.Environment {
	return func() *deployv1.Environment {
		env := &deployv1.Environment{}
		if err := k8sClient.Get(context.Background(), types.NamespacedName{Namespace: h.ns, Name: name}, env); err != nil {
			return nil
		}
		return env
	}
}

func (h *harness) updateEnv(name string, mutate func(*deployv1.Environment)) {
	h.t.Helper()
	h.g.Eventually(func() error {
		env := h.getEnv(name)
		mutate(env)
		return k8sClient.Update(context.Background(), env)
	}, timeout, 10*time.Millisecond).Should(Succeed())
}

type build struct {
	App, ID, Branch, Image string
	Number                 int64
}

func image(tag string) string {
	return "123456789012.dkr.ecr.us-east-1.amazonaws.com/shop-api:" + tag
}

func newBuild(n int64) build {
	return build{App: "shop-api", ID: fmt.Sprintf("shop-api:build-%d", n), Branch: "main", Image: image(fmt.Sprintf("b%d", n)), Number: n}
}

func (b build) body() []byte {
	raw, _ := json.Marshal(map[string]any{
		"application": b.App, "buildId": b.ID, "buildNumber": b.Number, "image": b.Image,
		"commit": "3f2c9e1", "branch": b.Branch, "finishedAt": "2026-11-25T10:00:00Z",
	})
	return raw
}

type reply struct {
	Code int
	Body map[string]any
	Raw  string
}

// post signs body with key at ts and posts it to the receiver.
func (h *harness) postSigned(body []byte, key []byte, ts time.Time) reply {
	h.t.Helper()
	req, err := http.NewRequest(http.MethodPost, h.mgr.receiverURL+"/v1/manifests", bytes.NewReader(body))
	h.g.Expect(err).NotTo(HaveOccurred())
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(manifest.TimestampHeader, fmt.Sprint(ts.Unix()))
	req.Header.Set(manifest.SignatureHeader, manifest.Sign(key, ts, body))
	return h.do(req)
}

func (h *harness) post(b build) reply {
	return h.postSigned(b.body(), testKey, time.Now())
}

func (h *harness) do(req *http.Request) reply {
	h.t.Helper()
	resp, err := http.DefaultClient.Do(req)
	h.g.Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := reply{Code: resp.StatusCode, Raw: string(raw)}
	_ = json.Unmarshal(raw, &r.Body)
	return r
}

// containerImageOf returns the image of a container of a task-definition document.
func containerImageOf(td map[string]any, container string) string {
	for _, c := range td["containerDefinitions"].([]any) {
		if cm := c.(map[string]any); cm["name"] == container {
			img, _ := cm["image"].(string)
			return img
		}
	}
	return ""
}

// webImageOf returns the image of the "web" container of a task-definition document.
func webImageOf(td map[string]any) string { return containerImageOf(td, "web") }

// containerImage returns the image of a container of the task definition the service
// currently runs ("" when there is no such service or container).
func (h *harness) containerImage(cluster, service, container string) string {
	svc, ok := h.sim.Service(cluster, service)
	if !ok {
		return ""
	}
	td, ok := h.sim.TaskDefinition(svc.TaskDefinitionARN)
	if !ok {
		return ""
	}
	return containerImageOf(td, container)
}

// webImage returns the image of the web container the service currently runs.
func (h *harness) webImage(cluster, service string) string {
	return h.containerImage(cluster, service, "web")
}

func deployedImage(env *deployv1.Environment) string {
	if env == nil {
		return ""
	}
	return env.Status.DeployedImage
}

func latestNumber(env *deployv1.Environment) int64 {
	if env == nil || env.Status.LatestBuild == nil {
		return 0
	}
	return env.Status.LatestBuild.Number
}

func condition(env *deployv1.Environment, typ string) *metav1.Condition {
	if env == nil {
		return nil
	}
	for i := range env.Status.Conditions {
		if env.Status.Conditions[i].Type == typ {
			return &env.Status.Conditions[i]
		}
	}
	return nil
}

const timeout = 20 * time.Second
const poll = 20 * time.Millisecond
