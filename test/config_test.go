package test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// render builds a kustomization the way `kubectl apply -k` does.
func render(g *WithT, dir string) []*unstructured.Unstructured {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	resMap, err := k.Run(filesys.MakeFsOnDisk(), dir)
	g.Expect(err).NotTo(HaveOccurred(), "kustomize build %s", dir)
	var objs []*unstructured.Unstructured
	for _, r := range resMap.Resources() {
		m, err := r.Map()
		g.Expect(err).NotTo(HaveOccurred())
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
	return objs
}

// TestDeployManifestsApplyToAnAPIServer applies config/default and the samples to a real
// kube-apiserver, so that a broken manifest (schema, RBAC, CRD validation) fails the tests.
func TestDeployManifestsApplyToAnAPIServer(t *testing.T) {
	g := NewWithT(t)
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Fatal("KUBEBUILDER_ASSETS is not set: run the tests with `make test`")
	}
	root, err := filepath.Abs("..")
	g.Expect(err).NotTo(HaveOccurred())
	env := &envtest.Environment{}
	cfg, err := env.Start()
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { g.Expect(env.Stop()).To(Succeed()) }()
	c, err := client.New(cfg, client.Options{})
	g.Expect(err).NotTo(HaveOccurred())
	ctx := context.Background()

	objs := render(g, filepath.Join(root, "config", "default"))
	kinds := map[string]int{}
	// Namespaces and CRDs first, as kubectl orders them.
	for _, pass := range []func(string) bool{
		func(k string) bool { return k == "Namespace" || k == "CustomResourceDefinition" },
		func(k string) bool { return k != "Namespace" && k != "CustomResourceDefinition" },
	} {
		for _, o := range objs {
			if !pass(o.GetKind()) {
				continue
			}
			kinds[o.GetKind()]++
			g.Expect(c.Create(ctx, o)).To(Succeed(), "%s %s", o.GetKind(), o.GetName())
		}
	}
	g.Expect(kinds).To(HaveKeyWithValue("CustomResourceDefinition", 2), "Environment and Notification")
	g.Expect(kinds).To(HaveKeyWithValue("Deployment", 1))
	g.Expect(kinds).To(HaveKey("ClusterRole"))
	g.Expect(kinds).To(HaveKey("Service"))

	// The Deployment is what the brief of a production install asks for.
	dep := &unstructured.Unstructured{}
	dep.SetAPIVersion("apps/v1")
	dep.SetKind("Deployment")
	g.Expect(c.Get(ctx, client.ObjectKey{Namespace: "autodeploy-system", Name: "autodeploy-controller-manager"}, dep)).To(Succeed())
	replicas, _, _ := unstructured.NestedInt64(dep.Object, "spec", "replicas")
	g.Expect(replicas).To(Equal(int64(2)))
	containers, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "containers")
	g.Expect(containers).To(HaveLen(1))
	manager := containers[0].(map[string]any)
	g.Expect(manager["args"]).To(ContainElements("--leader-elect", "--manifest-secret-file=/etc/autodeploy/manifest-key/key"))
	g.Expect(manager).To(HaveKey("livenessProbe"))
	g.Expect(manager).To(HaveKey("readinessProbe"))
	// The probes the manager process serves for its whole life, through API-server outages;
	// readiness waits longer than the manager's own look at the API server (2 s).
	livePath, _, _ := unstructured.NestedString(manager, "livenessProbe", "httpGet", "path")
	readyPath, _, _ := unstructured.NestedString(manager, "readinessProbe", "httpGet", "path")
	g.Expect(livePath).To(Equal("/healthz"))
	g.Expect(readyPath).To(Equal("/readyz"))
	readyTimeout, _, _ := unstructured.NestedInt64(manager, "readinessProbe", "timeoutSeconds")
	g.Expect(readyTimeout).To(BeNumerically(">", 2))
	sc := manager["securityContext"].(map[string]any)
	g.Expect(sc["readOnlyRootFilesystem"]).To(BeTrue())
	g.Expect(sc["allowPrivilegeEscalation"]).To(BeFalse())

	// The samples pass the CRD's validation once it is established.
	g.Eventually(func() error {
		for _, o := range render(g, filepath.Join(root, "config", "samples")) {
			o.SetNamespace("default")
			if err := c.Create(ctx, o, client.DryRunAll); err != nil {
				return err
			}
		}
		return nil
	}, 30*time.Second, 100*time.Millisecond).Should(Succeed())

	// And the CRD's validation rejects a bad Environment with a message naming the field.
	bad := render(g, filepath.Join(root, "config", "samples"))[0]
	bad.SetNamespace("default")
	g.Expect(unstructured.SetNestedField(bad.Object, "us east 1", "spec", "ecs", "region")).To(Succeed())
	err = c.Create(ctx, bad, client.DryRunAll)
	g.Expect(apierrors.IsInvalid(err)).To(BeTrue(), "%v", err)
	g.Expect(err.Error()).To(ContainSubstring("spec.ecs.region"))
}
