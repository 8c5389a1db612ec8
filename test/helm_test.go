package test

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"helm.sh/helm/v4/pkg/chart/common"
	chartutil "helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	releaseutil "helm.sh/helm/v4/pkg/release/v1/util"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	sigsyaml "sigs.k8s.io/yaml"
)

// chartDir is the Helm chart, relative to this package.
const chartDir = "../charts/autodeploy"

// chartRender is what `helm install` would send to the API server: the CRDs of crds/ and the
// rendered templates in Helm's install order, and the NOTES shown to the user.
type chartRender struct {
	crds  []*unstructured.Unstructured
	objs  []*unstructured.Unstructured
	notes string
}

// renderChart renders the chart with Helm's SDK the way `helm install <release> -n <namespace>`
// does: the chart's values coalesced with vals and checked against values.schema.json, the
// templates rendered by Helm's engine, and the manifests sorted in Helm's install order.
func renderChart(release, namespace string, vals map[string]any) (*chartRender, error) {
	ch, err := loader.Load(chartDir)
	if err != nil {
		return nil, err
	}
	top, err := chartutil.ToRenderValues(ch, vals,
		common.ReleaseOptions{Name: release, Namespace: namespace, IsInstall: true, Revision: 1},
		common.DefaultCapabilities)
	if err != nil {
		return nil, err
	}
	files, err := engine.Render(ch, top)
	if err != nil {
		return nil, err
	}
	out := &chartRender{}
	for name, content := range files {
		if strings.HasSuffix(name, "NOTES.txt") {
			out.notes = content
			delete(files, name)
		}
	}
	hooks, manifests, err := releaseutil.SortManifests(files, nil, releaseutil.InstallOrder)
	if err != nil {
		return nil, err
	}
	if len(hooks) > 0 {
		return nil, fmt.Errorf("the chart has %d hooks; it is meant to have none", len(hooks))
	}
	for _, m := range manifests {
		o, err := decodeObject(m.Content)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", m.Name, err)
		}
		out.objs = append(out.objs, o)
	}
	for _, crd := range ch.CRDObjects() {
		o, err := decodeObject(string(crd.File.Data))
		if err != nil {
			return nil, fmt.Errorf("%s: %v", crd.Name, err)
		}
		out.crds = append(out.crds, o)
	}
	return out, nil
}

func decodeObject(doc string) (*unstructured.Unstructured, error) {
	m := map[string]any{}
	if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
		return nil, err
	}
	return &unstructured.Unstructured{Object: m}, nil
}

// find returns the one rendered object of that kind and name, or fails.
func (r *chartRender) find(g *WithT, kind, name string) *unstructured.Unstructured {
	var found []*unstructured.Unstructured
	for _, o := range r.objs {
		if o.GetKind() == kind && o.GetName() == name {
			found = append(found, o)
		}
	}
	g.Expect(found).To(HaveLen(1), "rendered %s %s", kind, name)
	return found[0]
}

func (r *chartRender) kinds() map[string]int {
	k := map[string]int{}
	for _, o := range r.objs {
		k[o.GetKind()]++
	}
	return k
}

// managerContainer returns the Deployment's pod spec and its manager container.
func managerContainer(g *WithT, dep *unstructured.Unstructured) (corev1.PodSpec, corev1.Container) {
	tmpl, found, err := unstructured.NestedFieldNoCopy(dep.Object, "spec", "template")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(found).To(BeTrue())
	b, err := sigsyaml.Marshal(tmpl)
	g.Expect(err).NotTo(HaveOccurred())
	var pod corev1.PodTemplateSpec
	g.Expect(sigsyaml.UnmarshalStrict(b, &pod)).To(Succeed(), "the pod template has unknown fields")
	g.Expect(pod.Spec.Containers).To(HaveLen(1))
	return pod.Spec, pod.Spec.Containers[0]
}

// nonDefaultValues sets every value a platform team is likely to set.
func nonDefaultValues() map[string]any {
	return map[string]any{
		"image": map[string]any{
			"repository": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/autodeploy",
			"digest":     "sha256:" + strings.Repeat("ab", 32),
			"pullPolicy": "Always",
		},
		"replicaCount": 3,
		"aws":          map[string]any{"region": "eu-west-1", "accountId": "123456789012"},
		"serviceAccount": map[string]any{
			"irsaRoleArn": "arn:aws:iam::123456789012:role/autodeploy-controller",
			"annotations": map[string]any{"example.com/owner": "platform"},
		},
		"manifestKey": map[string]any{
			"create": true,
			"keys":   []any{"0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"},
		},
		"eventBridgeKey": map[string]any{"existingSecret": "autodeploy-eventbridge-key"},
		"receiver": map[string]any{
			"rate":        25,
			"burst":       100,
			"enableHTTP2": true,
			"tls":         map[string]any{"enabled": true, "secretName": "autodeploy-receiver-tls"},
			"service":     map[string]any{"type": "LoadBalancer", "port": 443},
		},
		"serviceMonitor": map[string]any{
			"enabled":  true,
			"labels":   map[string]any{"release": "kube-prometheus-stack"},
			"interval": "15s",
		},
		"ingress": map[string]any{
			"enabled":     true,
			"className":   "nginx",
			"annotations": map[string]any{"nginx.ingress.kubernetes.io/backend-protocol": "HTTPS"},
			"hosts": []any{map[string]any{
				"host":  "autodeploy.example.com",
				"paths": []any{map[string]any{"path": "/v1", "pathType": "Prefix"}},
			}},
			"tls": []any{map[string]any{"secretName": "autodeploy-ingress-tls", "hosts": []any{"autodeploy.example.com"}}},
		},
		"maxConcurrentReconciles": 8,
		"watchNamespaces":         []any{"shop", "payments"},
		"logLevel":                "debug",
		"extraArgs":               []any{"--rollout-poll-interval=10s"},
		"extraEnv":                []any{map[string]any{"name": "AWS_ENDPOINT_URL_ECS", "value": "http://ecssim.test:8080"}},
		"resources": map[string]any{
			"requests": map[string]any{"cpu": "100m", "memory": "128Mi"},
			"limits":   map[string]any{"cpu": "1", "memory": "512Mi"},
		},
		"podDisruptionBudget": map[string]any{"minAvailable": 2},
		"nodeSelector":        map[string]any{"kubernetes.io/os": "linux"},
	}
}

// TestHelmChartLints runs Helm's own linter over the chart, with the default values and with
// values that switch every option on, and fails on any warning or error.
func TestHelmChartLints(t *testing.T) {
	for name, vals := range map[string]map[string]any{"default": nil, "non-default": nonDefaultValues()} {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			res := lint.RunAll(chartDir, vals, "autodeploy-system")
			var bad []string
			for _, m := range res.Messages {
				if m.Severity >= support.WarningSev {
					bad = append(bad, m.Error())
				}
			}
			g.Expect(bad).To(BeEmpty())
			g.Expect(res.HighestSeverity).To(BeNumerically("<", support.WarningSev))
		})
	}
}

// TestHelmChartCRDAndRBACAreTheGenerated fails when the chart's CRD or the controller's RBAC
// rules drift from the ones controller-gen writes to config/ (TestGeneratedFilesMatchMarkers
// holds those to the markers): run `make manifests`, which copies them into the chart.
func TestHelmChartCRDAndRBACAreTheGenerated(t *testing.T) {
	g := NewWithT(t)
	bases, err := filepath.Glob("../config/crd/bases/*.yaml")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(bases).NotTo(BeEmpty())
	inChart, err := filepath.Glob(filepath.Join(chartDir, "crds", "*.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(inChart).To(HaveLen(len(bases)), "charts/autodeploy/crds differs from config/crd/bases: run `make manifests`")
	for _, b := range bases {
		want, err := os.ReadFile(b)
		g.Expect(err).NotTo(HaveOccurred())
		got, err := os.ReadFile(filepath.Join(chartDir, "crds", filepath.Base(b)))
		g.Expect(err).NotTo(HaveOccurred(), "%s is not in charts/autodeploy/crds: run `make manifests`", filepath.Base(b))
		g.Expect(string(got)).To(Equal(string(want)), "charts/autodeploy/crds/%s is out of date: run `make manifests`", filepath.Base(b))
	}

	// The ClusterRole the chart renders carries exactly the generated rules.
	role, err := os.ReadFile("../config/rbac/role.yaml")
	g.Expect(err).NotTo(HaveOccurred())
	generated, err := decodeObject(string(role))
	g.Expect(err).NotTo(HaveOccurred())
	r, err := renderChart("autodeploy", "autodeploy-system", nil)
	g.Expect(err).NotTo(HaveOccurred())
	rendered := r.find(g, "ClusterRole", "autodeploy-manager-role")
	g.Expect(equality.Semantic.DeepEqual(rendered.Object["rules"], generated.Object["rules"])).To(BeTrue(),
		"the chart's manager ClusterRole differs from config/rbac/role.yaml: run `make manifests`\nchart: %v\ngenerated: %v",
		rendered.Object["rules"], generated.Object["rules"])
}

// TestHelmChartDefaultsMatchKustomize renders the chart with its default values and holds the
// result to config/default: the same objects, names, replicas, flags, probes and pod security.
func TestHelmChartDefaultsMatchKustomize(t *testing.T) {
	g := NewWithT(t)
	r, err := renderChart("autodeploy", "autodeploy-system", nil)
	g.Expect(err).NotTo(HaveOccurred())

	// Every object config/default makes (except its Namespace: `helm install -n ... --create-namespace`
	// makes that) is in the chart under the same kind and name.
	kustomized := render(g, "../config/default")
	for _, k := range kustomized {
		if k.GetKind() == "Namespace" {
			continue
		}
		if k.GetKind() == "CustomResourceDefinition" {
			g.Expect(r.crds).To(ContainElement(WithTransform(func(o *unstructured.Unstructured) string { return o.GetName() }, Equal(k.GetName()))))
			continue
		}
		o := r.find(g, k.GetKind(), k.GetName())
		g.Expect(o.GetNamespace()).To(Equal(k.GetNamespace()), "%s %s", k.GetKind(), k.GetName())
	}
	g.Expect(r.kinds()).NotTo(HaveKey("Secret"), "the default install uses a Secret made by hand")
	g.Expect(r.kinds()).NotTo(HaveKey("Ingress"))
	g.Expect(r.kinds()).NotTo(HaveKey("ServiceMonitor"))

	var kDep *unstructured.Unstructured
	for _, k := range kustomized {
		if k.GetKind() == "Deployment" {
			kDep = k
		}
	}
	dep := r.find(g, "Deployment", "autodeploy-controller-manager")
	g.Expect(dep.Object["spec"].(map[string]any)["replicas"]).To(BeNumerically("==", 2))
	kPod, kManager := managerContainer(g, kDep)
	pod, manager := managerContainer(g, dep)
	g.Expect(manager.Args).To(ConsistOf(kManager.Args))
	g.Expect(manager.Command).To(Equal(kManager.Command))
	g.Expect(manager.Image).To(Equal("autodeploy:dev"))
	g.Expect(manager.Env).To(Equal(kManager.Env))
	g.Expect(manager.Ports).To(Equal(kManager.Ports))
	g.Expect(manager.LivenessProbe).To(Equal(kManager.LivenessProbe))
	g.Expect(manager.ReadinessProbe).To(Equal(kManager.ReadinessProbe))
	g.Expect(manager.Resources).To(Equal(kManager.Resources))
	g.Expect(manager.SecurityContext).To(Equal(kManager.SecurityContext))
	g.Expect(manager.VolumeMounts).To(Equal(kManager.VolumeMounts))
	g.Expect(pod.SecurityContext).To(Equal(kPod.SecurityContext))
	g.Expect(pod.Volumes).To(Equal(kPod.Volumes))
	g.Expect(pod.ServiceAccountName).To(Equal(kPod.ServiceAccountName))
	g.Expect(pod.TerminationGracePeriodSeconds).To(Equal(kPod.TerminationGracePeriodSeconds))
	g.Expect(pod.TopologySpreadConstraints).To(HaveLen(1))
	g.Expect(pod.TopologySpreadConstraints[0].WhenUnsatisfiable).To(Equal(corev1.ScheduleAnyway))

	pdb := r.find(g, "PodDisruptionBudget", "autodeploy-controller-manager")
	g.Expect(pdb.Object["spec"].(map[string]any)["minAvailable"]).To(BeNumerically("==", 1))
	for name, port := range map[string]int64{"autodeploy-receiver": 9292, "autodeploy-metrics": 8080} {
		svc := r.find(g, "Service", name)
		ports, _, _ := unstructured.NestedSlice(svc.Object, "spec", "ports")
		g.Expect(ports).To(HaveLen(1))
		g.Expect(ports[0].(map[string]any)["port"]).To(BeNumerically("==", port), name)
	}
	sa := r.find(g, "ServiceAccount", "autodeploy-controller-manager")
	g.Expect(sa.GetAnnotations()).To(BeEmpty())
	g.Expect(r.notes).To(ContainSubstring("create secret generic autodeploy-manifest-key --from-file=key="))
}

// TestHelmChartNonDefaultValues renders the chart with every option set and checks that the
// rendered objects carry the values.
func TestHelmChartNonDefaultValues(t *testing.T) {
	g := NewWithT(t)
	r, err := renderChart("platform", "ops", nonDefaultValues())
	g.Expect(err).NotTo(HaveOccurred())
	const prefix = "platform-autodeploy"

	dep := r.find(g, "Deployment", prefix+"-controller-manager")
	g.Expect(dep.GetNamespace()).To(Equal("ops"))
	g.Expect(dep.Object["spec"].(map[string]any)["replicas"]).To(BeNumerically("==", 3))
	pod, manager := managerContainer(g, dep)
	g.Expect(manager.Image).To(Equal("123456789012.dkr.ecr.eu-west-1.amazonaws.com/autodeploy@sha256:" + strings.Repeat("ab", 32)))
	g.Expect(manager.ImagePullPolicy).To(Equal(corev1.PullAlways))
	g.Expect(manager.Args).To(ConsistOf(
		"--leader-elect",
		"--health-probe-bind-address=:8081",
		"--metrics-bind-address=:8080",
		"--receiver-bind-address=:9292",
		"--manifest-secret-file=/etc/autodeploy/manifest-key/key",
		"--eventbridge-key-file=/etc/autodeploy/eventbridge-key/key",
		"--receiver-tls-cert-file=/etc/autodeploy/receiver-tls/tls.crt",
		"--receiver-tls-key-file=/etc/autodeploy/receiver-tls/tls.key",
		"--receiver-enable-http2",
		"--receiver-rate=25",
		"--receiver-burst=100",
		"--aws-account-id=123456789012",
		"--max-concurrent-reconciles=8",
		"--watch-namespaces=shop,payments",
		"--zap-log-level=debug",
		"--rollout-poll-interval=10s",
	))
	g.Expect(manager.Env).To(ContainElements(
		corev1.EnvVar{Name: "AWS_REGION", Value: "eu-west-1"},
		corev1.EnvVar{Name: "AWS_ENDPOINT_URL_ECS", Value: "http://ecssim.test:8080"},
	))
	g.Expect(manager.Resources.Limits.Memory().String()).To(Equal("512Mi"))
	g.Expect(manager.Resources.Requests.Cpu().String()).To(Equal("100m"))
	g.Expect(pod.NodeSelector).To(HaveKeyWithValue("kubernetes.io/os", "linux"))
	g.Expect(pod.ServiceAccountName).To(Equal(prefix + "-controller-manager"))
	secretOf := map[string]string{}
	for _, v := range pod.Volumes {
		if v.Secret != nil {
			secretOf[v.Name] = v.Secret.SecretName
		}
	}
	g.Expect(secretOf).To(Equal(map[string]string{
		"manifest-key":    prefix + "-manifest-key",
		"eventbridge-key": "autodeploy-eventbridge-key",
		"receiver-tls":    "autodeploy-receiver-tls",
	}))
	mounts := map[string]string{}
	for _, m := range manager.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	g.Expect(mounts).To(HaveKeyWithValue("receiver-tls", "/etc/autodeploy/receiver-tls"))
	g.Expect(mounts).To(HaveKeyWithValue("eventbridge-key", "/etc/autodeploy/eventbridge-key"))

	// The created manifest key Secret holds both keys, one per line, newest first.
	secret := r.find(g, "Secret", prefix+"-manifest-key")
	data, _, _ := unstructured.NestedString(secret.Object, "data", "key")
	key, err := base64.StdEncoding.DecodeString(data)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(key)).To(Equal("0123456789abcdef0123456789abcdef\nfedcba9876543210fedcba9876543210\n"))

	sa := r.find(g, "ServiceAccount", prefix+"-controller-manager")
	g.Expect(sa.GetAnnotations()).To(Equal(map[string]string{
		"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/autodeploy-controller",
		"example.com/owner":          "platform",
	}))
	binding := r.find(g, "ClusterRoleBinding", prefix+"-manager-rolebinding")
	subjects, _, _ := unstructured.NestedSlice(binding.Object, "subjects")
	g.Expect(subjects).To(ConsistOf(map[string]any{"kind": "ServiceAccount", "name": prefix + "-controller-manager", "namespace": "ops"}))

	recv := r.find(g, "Service", prefix+"-receiver")
	g.Expect(recv.Object["spec"].(map[string]any)["type"]).To(Equal("LoadBalancer"))
	ports, _, _ := unstructured.NestedSlice(recv.Object, "spec", "ports")
	g.Expect(ports[0].(map[string]any)["port"]).To(BeNumerically("==", 443))
	pdb := r.find(g, "PodDisruptionBudget", prefix+"-controller-manager")
	g.Expect(pdb.Object["spec"].(map[string]any)["minAvailable"]).To(BeNumerically("==", 2))

	ing := r.find(g, "Ingress", prefix+"-receiver")
	g.Expect(ing.GetAnnotations()).To(HaveKeyWithValue("nginx.ingress.kubernetes.io/backend-protocol", "HTTPS"))
	class, _, _ := unstructured.NestedString(ing.Object, "spec", "ingressClassName")
	g.Expect(class).To(Equal("nginx"))
	rules, _, _ := unstructured.NestedSlice(ing.Object, "spec", "rules")
	g.Expect(rules).To(HaveLen(1))
	g.Expect(rules[0]).To(HaveKeyWithValue("host", "autodeploy.example.com"))
	paths, _, _ := unstructured.NestedSlice(rules[0].(map[string]any), "http", "paths")
	g.Expect(paths).To(HaveLen(1))
	backend, _, _ := unstructured.NestedMap(paths[0].(map[string]any), "backend", "service")
	g.Expect(backend).To(Equal(map[string]any{"name": prefix + "-receiver", "port": map[string]any{"name": "receiver"}}))
	tls, _, _ := unstructured.NestedSlice(ing.Object, "spec", "tls")
	g.Expect(tls).To(HaveLen(1))

	// The ServiceMonitor selects the metrics Service, and only it, by its labels and port name.
	sm := r.find(g, "ServiceMonitor", prefix+"-controller-manager")
	g.Expect(sm.GetLabels()).To(HaveKeyWithValue("release", "kube-prometheus-stack"))
	sel, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
	g.Expect(sel).NotTo(BeEmpty())
	var selected []string
	for _, o := range r.objs {
		if o.GetKind() != "Service" {
			continue
		}
		matches := true
		for k, v := range sel {
			if o.GetLabels()[k] != v {
				matches = false
			}
		}
		if matches {
			selected = append(selected, o.GetName())
		}
	}
	g.Expect(selected).To(ConsistOf(prefix + "-metrics"))
	ns, _, _ := unstructured.NestedStringSlice(sm.Object, "spec", "namespaceSelector", "matchNames")
	g.Expect(ns).To(ConsistOf("ops"))
	endpoints, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	g.Expect(endpoints).To(ConsistOf(map[string]any{"port": "metrics", "scheme": "http", "path": "/metrics", "interval": "15s"}))
	metricsSvc := r.find(g, "Service", prefix+"-metrics")
	svcPorts, _, _ := unstructured.NestedSlice(metricsSvc.Object, "spec", "ports")
	g.Expect(svcPorts[0]).To(HaveKeyWithValue("name", "metrics"))
}

// TestHelmChartRefusesBadValues checks that values that would install a broken controller are
// refused with a message naming the value.
func TestHelmChartRefusesBadValues(t *testing.T) {
	for _, tc := range []struct {
		name string
		vals map[string]any
		want string
	}{
		{"no leader election with replicas", map[string]any{"leaderElection": map[string]any{"enabled": false}}, "leaderElection.enabled is false with replicaCount 2"},
		{"created key without keys", map[string]any{"manifestKey": map[string]any{"create": true}}, "manifestKey.keys: give one key"},
		{"short key", map[string]any{"manifestKey": map[string]any{"create": true, "keys": []any{"short"}}}, "manifestKey.keys[0]: 5 bytes, want at least 16"},
		{"key and existing secret", map[string]any{"manifestKey": map[string]any{"create": true, "existingSecret": "x", "keys": []any{strings.Repeat("k", 16)}}}, "manifestKey: set either existingSecret or create"},
		{"TLS without secret", map[string]any{"receiver": map[string]any{"tls": map[string]any{"enabled": true}}}, "receiver.tls.secretName"},
		{"account ID", map[string]any{"aws": map[string]any{"accountId": "12345"}}, `aws.accountId: "12345" is not a 12-digit AWS account ID`},
		{"IRSA role", map[string]any{"serviceAccount": map[string]any{"irsaRoleArn": "autodeploy"}}, `serviceAccount.irsaRoleArn: "autodeploy" is not an IAM role ARN`},
		{"digest", map[string]any{"image": map[string]any{"digest": "abc"}}, `image.digest: "abc" is not a digest`},
		{"ingress without hosts", map[string]any{"ingress": map[string]any{"enabled": true}}, "ingress.hosts: name at least one host"},
		{"existing service account unnamed", map[string]any{"serviceAccount": map[string]any{"create": false}}, "serviceAccount.name: name the existing service account"},
		{"mistyped value", map[string]any{"replicas": 3}, "replicas"},
		{"wrong type", map[string]any{"replicaCount": "two"}, "replicaCount"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			_, err := renderChart("autodeploy", "autodeploy-system", tc.vals)
			g.Expect(err).To(MatchError(ContainSubstring(tc.want)))
		})
	}
}

// TestHelmChartAppliesToAnAPIServer installs the chart's objects, with the default and with
// non-default values, on a real kube-apiserver, as `helm install` would: CRDs first, then the
// templates in Helm's install order. A broken object (schema, RBAC, a selector) fails here.
func TestHelmChartAppliesToAnAPIServer(t *testing.T) {
	g := NewWithT(t)
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Fatal("KUBEBUILDER_ASSETS is not set: run the tests with `make test`")
	}
	env := &envtest.Environment{}
	cfg, err := env.Start()
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { g.Expect(env.Stop()).To(Succeed()) }()
	c, err := client.New(cfg, client.Options{})
	g.Expect(err).NotTo(HaveOccurred())
	ctx := context.Background()

	// The Prometheus Operator's CRD is not part of the chart; a minimal stand-in lets the API
	// server accept the ServiceMonitor (the fields it carries are checked in
	// TestHelmChartNonDefaultValues).
	smCRD, err := decodeObject(serviceMonitorCRD)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(c.Create(ctx, smCRD)).To(Succeed())

	install := func(release, namespace string, vals map[string]any) *chartRender {
		r, err := renderChart(release, namespace, vals)
		g.Expect(err).NotTo(HaveOccurred())
		// `helm install` creates CRDs that do not exist yet and leaves existing ones alone.
		for _, crd := range r.crds {
			err := c.Create(ctx, crd)
			g.Expect(err == nil || apierrors.IsAlreadyExists(err)).To(BeTrue(), "CRD %s: %v", crd.GetName(), err)
		}
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}
		g.Expect(c.Create(ctx, ns)).To(Succeed())
		for _, o := range r.objs {
			obj := o.DeepCopy()
			if obj.GetKind() != "ServiceMonitor" {
				g.Expect(c.Create(ctx, obj, client.FieldValidation("Strict"))).To(Succeed(), "%s %s", o.GetKind(), o.GetName())
				continue
			}
			// A custom resource is served once its CRD is established.
			g.Eventually(func() error {
				return c.Create(ctx, obj, client.FieldValidation("Strict"))
			}, 30*time.Second, 100*time.Millisecond).Should(Succeed(), "%s %s", o.GetKind(), o.GetName())
		}
		return r
	}

	def := install("autodeploy", "autodeploy-system", nil)
	g.Expect(def.kinds()).To(HaveKeyWithValue("Deployment", 1))
	g.Expect(def.kinds()).To(HaveKeyWithValue("Service", 2))
	g.Expect(def.kinds()).To(HaveKeyWithValue("PodDisruptionBudget", 1))
	g.Expect(def.kinds()).To(HaveKeyWithValue("ClusterRole", 3))

	custom := install("platform", "ops", nonDefaultValues())
	g.Expect(custom.kinds()).To(HaveKeyWithValue("Ingress", 1))
	g.Expect(custom.kinds()).To(HaveKeyWithValue("ServiceMonitor", 1))
	g.Expect(custom.kinds()).To(HaveKeyWithValue("Secret", 1))

	// What the API server stored is what the values asked for.
	dep := &unstructured.Unstructured{}
	dep.SetAPIVersion("apps/v1")
	dep.SetKind("Deployment")
	g.Expect(c.Get(ctx, client.ObjectKey{Namespace: "ops", Name: "platform-autodeploy-controller-manager"}, dep)).To(Succeed())
	replicas, _, _ := unstructured.NestedInt64(dep.Object, "spec", "replicas")
	g.Expect(replicas).To(Equal(int64(3)))
	sa := &corev1.ServiceAccount{}
	g.Expect(c.Get(ctx, client.ObjectKey{Namespace: "ops", Name: "platform-autodeploy-controller-manager"}, sa)).To(Succeed())
	g.Expect(sa.Annotations).To(HaveKeyWithValue("eks.amazonaws.com/role-arn", "arn:aws:iam::123456789012:role/autodeploy-controller"))
	secret := &corev1.Secret{}
	g.Expect(c.Get(ctx, client.ObjectKey{Namespace: "ops", Name: "platform-autodeploy-manifest-key"}, secret)).To(Succeed())
	g.Expect(strings.Split(strings.TrimSpace(string(secret.Data["key"])), "\n")).To(HaveLen(2))

	// The chart's CRD accepts the samples once it is established.
	g.Eventually(func() error {
		for _, o := range render(g, "../config/samples") {
			o.SetNamespace("default")
			if err := c.Create(ctx, o, client.DryRunAll); err != nil {
				return err
			}
		}
		return nil
	}, 30*time.Second, 100*time.Millisecond).Should(Succeed())
}

// serviceMonitorCRD stands in for the Prometheus Operator's ServiceMonitor CRD.
const serviceMonitorCRD = `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  names: {kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors, singular: servicemonitor}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
`
