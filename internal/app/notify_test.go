package app_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/autodeploy-dev/autodeploy/internal/manifest"
	"github.com/autodeploy-dev/autodeploy/internal/notify"
)

// TestNotifyToATenantRoute: autodeployctl notify's sender posts to a namespace's route with
// that namespace's key; the cluster-wide key is refused there.
func TestNotifyToATenantRoute(t *testing.T) {
	h := newHarness(t)
	g := h.g
	h.seedService("prod", "shop-api", image("v1"))
	h.createEnv("prod", nil)
	tenantKey := "tenant-manifest-key-0123456789"
	h.setTenantKeys(h.ns, map[string]string{"manifestKey": tenantKey})
	h.startManager()

	b := newBuild(31)
	m := &manifest.Manifest{Application: b.App, BuildID: b.ID, BuildNumber: b.Number, Image: b.Image, Branch: b.Branch}
	reply, err := notify.SendTo(context.Background(), http.DefaultClient, h.mgr.receiverURL, h.ns, []byte(tenantKey), m, time.Now())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(reply.Status).To(Equal(http.StatusAccepted), reply.Body)
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(deployedImage, Equal(b.Image)))

	m.BuildID, m.BuildNumber = "shop-api:build-32", 32
	reply, err = notify.SendTo(context.Background(), http.DefaultClient, h.mgr.receiverURL, h.ns, testKey, m, time.Now())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(reply.Status).To(Equal(http.StatusUnauthorized), "the cluster-wide key does not open a tenant's route")
}
