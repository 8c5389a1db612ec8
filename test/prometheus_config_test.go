package test

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// copyTree copies the files beneath src to dst.
func copyTree(g *WithT, src, dst string) {
	g.Expect(filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), raw, 0o644)
	})).To(Succeed())
}

// nestedSlice reads a list without the deep copy of unstructured.NestedSlice, which refuses
// the int values kustomize renders.
func nestedSlice(obj map[string]any, fields ...string) ([]any, bool, error) {
	v, found, err := unstructured.NestedFieldNoCopy(obj, fields...)
	s, _ := v.([]any)
	return s, found, err
}

func findObject(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

// TestPrometheusConfig renders config/default with its commented `../prometheus` resource
// switched on, as docs/monitoring.md says, and checks that the ServiceMonitor scrapes the
// metrics port of the metrics Service, in its namespace, and that the rules come along.
func TestPrometheusConfig(t *testing.T) {
	g := NewWithT(t)
	root, err := filepath.Abs("..")
	g.Expect(err).NotTo(HaveOccurred())
	dir := t.TempDir()
	copyTree(g, filepath.Join(root, "config"), filepath.Join(dir, "config"))
	kfile := filepath.Join(dir, "config", "default", "kustomization.yaml")
	raw, err := os.ReadFile(kfile)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(raw)).To(ContainSubstring("\n#- ../prometheus\n"), "config/default offers the Prometheus resources, commented out")
	g.Expect(os.WriteFile(kfile, []byte(strings.Replace(string(raw), "\n#- ../prometheus\n", "\n- ../prometheus\n", 1)), 0o644)).To(Succeed())

	// Off by default: a cluster without the Prometheus Operator installs config/default as is.
	g.Expect(findObject(render(g, filepath.Join(root, "config", "default")), "ServiceMonitor", "autodeploy-controller-manager-metrics-monitor")).To(BeNil())

	objs := render(g, filepath.Join(dir, "config", "default"))
	sm := findObject(objs, "ServiceMonitor", "autodeploy-controller-manager-metrics-monitor")
	g.Expect(sm).NotTo(BeNil())
	g.Expect(sm.GetAPIVersion()).To(Equal("monitoring.coreos.com/v1"))
	rules := findObject(objs, "PrometheusRule", "autodeploy-alerts")
	g.Expect(rules).NotTo(BeNil())
	g.Expect(rules.GetNamespace()).To(Equal("autodeploy-system"))

	svc := findObject(objs, "Service", "autodeploy-metrics")
	g.Expect(svc).NotTo(BeNil())
	g.Expect(sm.GetNamespace()).To(Equal(svc.GetNamespace()), "a ServiceMonitor selects Services of its own namespace unless told otherwise")
	selector, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
	g.Expect(selector).NotTo(BeEmpty())
	for k, v := range selector {
		g.Expect(svc.GetLabels()).To(HaveKeyWithValue(k, v), "the ServiceMonitor selects the metrics Service")
	}
	endpoints, _, _ := nestedSlice(sm.Object, "spec", "endpoints")
	g.Expect(endpoints).To(HaveLen(1))
	ep := endpoints[0].(map[string]any)
	ports, _, _ := nestedSlice(svc.Object, "spec", "ports")
	var portNames []any
	for _, p := range ports {
		portNames = append(portNames, p.(map[string]any)["name"])
	}
	g.Expect(portNames).To(ContainElement(ep["port"]), "the endpoint names a port of the metrics Service")
	g.Expect(ep).To(HaveKeyWithValue("path", "/metrics"))
	g.Expect(ep).To(HaveKeyWithValue("scheme", "http"), "the manager serves metrics over plain HTTP")

	// The other Services the selector matches have no such port, so they add no target.
	for _, o := range objs {
		if o.GetKind() != "Service" || o.GetName() == svc.GetName() {
			continue
		}
		ports, _, _ := nestedSlice(o.Object, "spec", "ports")
		for _, p := range ports {
			g.Expect(p.(map[string]any)["name"]).NotTo(Equal(ep["port"]), "Service %s", o.GetName())
		}
	}

	// The metrics port is the one the manager binds (--metrics-bind-address).
	dep := findObject(objs, "Deployment", "autodeploy-controller-manager")
	g.Expect(dep).NotTo(BeNil())
	containers, _, _ := nestedSlice(dep.Object, "spec", "template", "spec", "containers")
	manager := containers[0].(map[string]any)
	g.Expect(manager["args"]).To(ContainElement("--metrics-bind-address=:8080"))
	var target any
	for _, p := range ports {
		if p.(map[string]any)["name"] == ep["port"] {
			target = p.(map[string]any)["targetPort"]
		}
	}
	g.Expect(manager["ports"]).To(ContainElement(And(HaveKeyWithValue("name", target), HaveKeyWithValue("containerPort", BeNumerically("==", 8080)))))

	// The Grafana ConfigMap carries the dashboard and the sidecar's label.
	dash := render(g, filepath.Join(root, "config", "grafana"))
	g.Expect(dash).To(HaveLen(1))
	g.Expect(dash[0].GetKind()).To(Equal("ConfigMap"))
	g.Expect(dash[0].GetLabels()).To(HaveKeyWithValue("grafana_dashboard", "1"))
	data, _, _ := unstructured.NestedStringMap(dash[0].Object, "data")
	want, err := os.ReadFile(filepath.Join(root, "config", "grafana", "autodeploy.json"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(data).To(HaveKeyWithValue("autodeploy.json", string(want)))
}
