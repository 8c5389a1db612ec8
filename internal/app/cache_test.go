package app_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/app"
)

const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// TestCacheKeepsOnlyWhatTheManagerReads: the manager's cache drops managedFields and kubectl's
// last-applied copy of the spec, and the status writes made from cached objects leave both in
// place on the API server.
func TestCacheKeepsOnlyWhatTheManagerReads(t *testing.T) {
	h := newHarness(t)
	g := h.g
	h.seedService("prod", "shop-api", image("v1"))
	applied := `{"apiVersion":"deploy.autodeploy.dev/v1alpha1","kind":"Environment","spec":{"application":"shop-api"` + strings.Repeat(" ", 2000) + `}}`
	h.createEnv("prod", func(e *deployv1.Environment) {
		e.Annotations = map[string]string{lastApplied: applied, "example.com/kept": "yes"}
	})
	live := h.getEnv("prod")
	g.Expect(live.ManagedFields).NotTo(BeEmpty(), "the API server tracks field managers")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	opts := app.CacheOptions(map[string]cache.Config{h.ns: {}})
	opts.Scheme = scheme
	c, err := cache.New(restConfig, opts)
	g.Expect(err).NotTo(HaveOccurred())
	go func() { _ = c.Start(ctx) }()
	g.Expect(c.WaitForCacheSync(ctx)).To(BeTrue())
	cached := &deployv1.Environment{}
	g.Expect(c.Get(ctx, client.ObjectKey{Namespace: h.ns, Name: "prod"}, cached)).To(Succeed())
	g.Expect(cached.ManagedFields).To(BeEmpty())
	g.Expect(cached.Annotations).To(Equal(map[string]string{"example.com/kept": "yes"}))
	g.Expect(cached.Spec).To(Equal(live.Spec))

	// The manager (with these options) deploys a build: its status writes keep what its
	// cache dropped.
	h.startManager()
	b := newBuild(7)
	g.Expect(h.post(b).Code).To(Equal(http.StatusAccepted))
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(deployedImage, Equal(b.Image)))
	after := h.getEnv("prod")
	g.Expect(after.Annotations).To(HaveKeyWithValue(lastApplied, applied))
	g.Expect(after.Annotations).To(HaveKeyWithValue("example.com/kept", "yes"))
	g.Expect(after.ManagedFields).NotTo(BeEmpty())
}
