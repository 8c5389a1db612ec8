package app_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	eventsv1 "k8s.io/api/events/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/app"
	"github.com/autodeploy-dev/autodeploy/internal/manifest"
	"github.com/autodeploy-dev/autodeploy/internal/receiver"
)

const (
	keyA      = "team-a-manifest-key-0123456789"
	keyB      = "team-b-manifest-key-0123456789"
	eventKeyA = "team-a-eventbridge-key-0123456789"
	eventKeyB = "team-b-eventbridge-key-0123456789"
)

// editEvent decodes an event, applies f and encodes it again.
func editEvent(body []byte, f func(ev map[string]any)) []byte {
	var v map[string]any
	if err := json.Unmarshal(body, &v); err != nil {
		panic(err)
	}
	f(v)
	out, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return out
}

func evDetail(ev map[string]any) map[string]any { return ev["detail"].(map[string]any) }
func evInfo(ev map[string]any) map[string]any {
	return evDetail(ev)["additional-information"].(map[string]any)
}

// codeBuildEvent is AWS's CodeBuild example with the given event id, build id and number.
func codeBuildEvent(id, buildID string, number float64) []byte {
	return editEvent(eventFixture("codebuild-succeeded.json"), func(ev map[string]any) {
		ev["id"] = id
		evDetail(ev)["build-id"] = buildID
		evInfo(ev)["build-number"] = number
	})
}

func TestTenantKeysKeepNamespacesApart(t *testing.T) {
	h := newHarness(t)
	g := h.g
	nsA := h.ns
	nsB := h.addNamespace("b")
	nsNoSecret := h.addNamespace("c")
	for _, ns := range []string{nsA, nsB} {
		h.createEnvIn(ns, "prod", func(e *deployv1.Environment) { e.Spec.AutoDeploy = false })
	}
	h.setTenantKeys(nsA, map[string]string{receiver.SecretManifestKey: keyA, receiver.SecretEventBridgeKey: eventKeyA})
	h.setTenantKeys(nsB, map[string]string{receiver.SecretManifestKey: keyB, receiver.SecretEventBridgeKey: eventKeyB})
	h.startManager()
	now := time.Now()

	// Team A's key on team B's path fails exactly like a namespace that does not exist, one
	// without a Secret, a malformed one, or the cluster-wide key on a tenant's path.
	body := newBuild(7).body()
	rejected := map[string]reply{
		"A's key on B":           h.postSignedTo(manifestsPath(nsB), body, []byte(keyA), now),
		"no such namespace":      h.postSignedTo(manifestsPath("no-such-namespace-4711"), body, []byte(keyA), now),
		"namespace without keys": h.postSignedTo(manifestsPath(nsNoSecret), body, []byte(keyA), now),
		"malformed namespace":    h.postSignedTo(manifestsPath("Not_A_Namespace"), body, []byte(keyA), now),
		"global key on B":        h.postSignedTo(manifestsPath(nsB), body, testKey, now),
	}
	for name, r := range rejected {
		g.Expect(r.Code).To(Equal(http.StatusUnauthorized), name)
		g.Expect(r.Raw).To(Equal(rejected["A's key on B"].Raw), "%s answers like the others", name)
		g.Expect(r.Raw).NotTo(Or(ContainSubstring("shop-api"), ContainSubstring(nsB), ContainSubstring("prod")), name)
	}
	cb := codeBuildEvent("cross-1", "cross-build-1", 1)
	evRejected := map[string]reply{
		"A's event key on B":     h.postEvent(eventsPath(nsB), cb, eventKeyA),
		"no such namespace":      h.postEvent(eventsPath("no-such-namespace-4711"), cb, eventKeyA),
		"namespace without keys": h.postEvent(eventsPath(nsNoSecret), cb, eventKeyA),
		"A's manifest key":       h.postEvent(eventsPath(nsA), cb, keyA),
		"no cluster-wide key":    h.postEvent(receiver.EventsPath, cb, eventKeyA),
	}
	for name, r := range evRejected {
		g.Expect(r.Code).To(Equal(http.StatusUnauthorized), name)
		g.Expect(r.Raw).To(Equal(evRejected["A's event key on B"].Raw), "%s answers like the others", name)
	}
	g.Expect(h.getEnvIn(nsB, "prod").Status.LatestBuild).To(BeNil())
	g.Expect(h.getEnvIn(nsA, "prod").Status.LatestBuild).To(BeNil())

	// A's key on A's path records the build in A only, though B has the same application.
	r := h.postSignedTo(manifestsPath(nsA), body, []byte(keyA), now)
	g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
	g.Expect(r.Body["updated"]).To(ConsistOf(nsA + "/prod"))
	g.Expect(latestNumber(h.getEnvIn(nsA, "prod"))).To(Equal(int64(7)))
	g.Expect(h.getEnvIn(nsB, "prod").Status.LatestBuild).To(BeNil())

	// Likewise for events.
	r = h.postEvent(eventsPath(nsB), editEvent(cb, func(ev map[string]any) {
		evInfo(ev)["exported-environment-variables"] = []any{
			map[string]any{"name": "IMAGE_URI", "value": image("b9")},
			map[string]any{"name": "AUTODEPLOY_APPLICATION", "value": "shop-api"},
			map[string]any{"name": "AUTODEPLOY_BRANCH", "value": "main"},
		}
		evInfo(ev)["build-number"] = 9.0
	}), eventKeyB)
	g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
	g.Expect(r.Body["updated"]).To(ConsistOf(nsB + "/prod"))
	g.Expect(latestNumber(h.getEnvIn(nsA, "prod"))).To(Equal(int64(7)))

	// The cluster-wide route and key (single-team clusters) reach every namespace.
	r = h.postSignedTo(receiver.ManifestPath, newBuild(10).body(), testKey, now)
	g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
	g.Expect(r.Body["updated"]).To(ConsistOf(nsA+"/prod", nsB+"/prod"))
}

func TestTenantKeyRotationNeedsNoDowntime(t *testing.T) {
	h := newHarness(t)
	g := h.g
	// Manifests and ECR pushes go to different applications: their build numbers are not
	// comparable (ECR's are push times).
	h.createEnv("manifests", func(e *deployv1.Environment) { e.Spec.AutoDeploy = false })
	h.createEnv("pushes", func(e *deployv1.Environment) {
		e.Spec.AutoDeploy = false
		e.Spec.Application = "my-repository-name"
		e.Spec.Branch = ""
	})
	oldKey, newKey := "old-manifest-key-0123456789", "new-manifest-key-0123456789"
	oldEvent, newEvent := "old-eventbridge-key-0123456789", "new-eventbridge-key-0123456789"
	h.setTenantKeys(h.ns, map[string]string{receiver.SecretManifestKey: oldKey, receiver.SecretEventBridgeKey: oldEvent})
	h.startManager()

	n := int64(0)
	manifestWith := func(key string) int {
		n++
		return h.postSignedTo(manifestsPath(h.ns), newBuild(n).body(), []byte(key), time.Now()).Code
	}
	eventWith := func(key string) int {
		n++
		body := editEvent(eventFixture("ecr-push.json"), func(ev map[string]any) {
			ev["id"] = fmt.Sprintf("rotation-%d", n)
			ev["time"] = time.Unix(2000000000+n, 0).UTC().Format(time.RFC3339)
			evDetail(ev)["image-digest"] = fmt.Sprintf("sha256:%064x", n)
		})
		return h.postEvent(eventsPath(h.ns), body, key).Code
	}
	g.Expect(manifestWith(oldKey)).To(Equal(http.StatusAccepted))
	g.Expect(eventWith(oldEvent)).To(Equal(http.StatusAccepted))

	// Rotation: the new key in, the old one kept as previous; senders move one by one.
	h.setTenantKeys(h.ns, map[string]string{
		receiver.SecretManifestKey: newKey, receiver.SecretPreviousManifestKey: oldKey,
		receiver.SecretEventBridgeKey: newEvent, receiver.SecretPreviousEventBridgeKey: oldEvent,
	})
	g.Expect(manifestWith(oldKey)).To(Equal(http.StatusAccepted))
	g.Expect(manifestWith(newKey)).To(Equal(http.StatusAccepted))
	g.Expect(eventWith(oldEvent)).To(Equal(http.StatusAccepted))
	g.Expect(eventWith(newEvent)).To(Equal(http.StatusAccepted))

	// The previous keys removed: only the new ones work.
	h.setTenantKeys(h.ns, map[string]string{receiver.SecretManifestKey: newKey, receiver.SecretEventBridgeKey: newEvent})
	g.Expect(manifestWith(oldKey)).To(Equal(http.StatusUnauthorized))
	g.Expect(eventWith(oldEvent)).To(Equal(http.StatusUnauthorized))
	g.Expect(manifestWith(newKey)).To(Equal(http.StatusAccepted))
	g.Expect(eventWith(newEvent)).To(Equal(http.StatusAccepted))

	// The cluster-wide EventBridge key file rotates the same way (two lines).
	first, second := "global-event-key-one-0123456789", "global-event-key-two-0123456789"
	keys := [][]byte{[]byte(first), []byte(second)}
	h.eventKeys.Store(&keys)
	n++
	ecr := editEvent(eventFixture("ecr-push.json"), func(ev map[string]any) {
		ev["id"] = "global-1"
		ev["time"] = time.Unix(2100000000, 0).UTC().Format(time.RFC3339)
	})
	g.Expect(h.postEvent(receiver.EventsPath, ecr, first).Code).To(Equal(http.StatusAccepted))
	ecr2 := editEvent(ecr, func(ev map[string]any) {
		ev["id"] = "global-2"
		ev["time"] = time.Unix(2100000001, 0).UTC().Format(time.RFC3339)
		evDetail(ev)["image-digest"] = fmt.Sprintf("sha256:%064x", 99)
	})
	g.Expect(h.postEvent(receiver.EventsPath, ecr2, second).Code).To(Equal(http.StatusAccepted))
}

func TestEventBridgeCodeBuildEventDeploysAndRedeliveriesChangeNothing(t *testing.T) {
	h := newHarness(t)
	g := h.g
	h.seedService("prod", "shop-api", image("v1"))
	// AWS's example names project my-sample-project and exports no branch.
	h.createEnv("prod", func(e *deployv1.Environment) { e.Spec.Application = "my-sample-project"; e.Spec.Branch = "" })
	h.setTenantKeys(h.ns, map[string]string{receiver.SecretEventBridgeKey: eventKeyA})
	h.startManager()
	path := eventsPath(h.ns)
	fixture := eventFixture("codebuild-succeeded.json")
	const want = "123456789012.dkr.ecr.us-west-2.amazonaws.com/my-sample-project:my-source-version"

	// AWS's documentation example, verbatim, exports no image variable: 400 naming the field,
	// which EventBridge does not retry (the dead-letter queue gets it).
	r := h.postEvent(path, eventFixture("aws-doc-codebuild-build-state-change.json"), eventKeyA)
	g.Expect(r.Code).To(Equal(http.StatusBadRequest), r.Raw)
	g.Expect(r.Body["error"]).To(And(ContainSubstring(`"image"`), ContainSubstring("IMAGE_URI")))

	r = h.postEvent(path, fixture, eventKeyA)
	g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
	g.Expect(r.Body["updated"]).To(ConsistOf(h.ns + "/prod"))
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(deployedImage, Equal(want)))
	g.Eventually(func() string { return h.webImage("prod", "shop-api") }, timeout, poll).Should(Equal(want))
	recorded := h.getEnv("prod").Status.LatestBuild
	g.Expect(recorded.Number).To(Equal(int64(55)))
	g.Expect(recorded.Commit).To(Equal("my-source-version"))
	g.Expect(recorded.FinishedAt.UTC()).To(Equal(time.Date(2017, 9, 1, 16, 14, 28, 0, time.UTC)))

	// Every redelivery and late or conflicting event gets a 2xx, which EventBridge does not
	// retry, and changes nothing.
	for _, tc := range []struct {
		name   string
		body   []byte
		result string
		list   string
	}{
		{"the same event again", fixture, "duplicate", ""},
		{"the same build, another event id", codeBuildEvent("other-id", recorded.ID, 55), "duplicate", "duplicate"},
		{"an older build", codeBuildEvent("older", "older-build", 54), "stale", "stale"},
		{"another build with the same number", codeBuildEvent("conflicting", "conflicting-build", 55), "conflict", "conflicts"},
		{"a failed build", editEvent(codeBuildEvent("failed", "failed-build", 56), func(ev map[string]any) { evDetail(ev)["build-status"] = "FAILED" }), "ignored", ""},
		{"a phase change", editEvent(codeBuildEvent("phase", "phase-build", 57), func(ev map[string]any) { ev["detail-type"] = "CodeBuild Build Phase Change" }), "ignored", ""},
	} {
		r := h.postEvent(path, tc.body, eventKeyA)
		g.Expect(r.Code).To(Equal(http.StatusOK), "%s: %s", tc.name, r.Raw)
		g.Expect(r.Body["result"]).To(Equal(tc.result), tc.name)
		if tc.list != "" {
			g.Expect(r.Body[tc.list]).To(ConsistOf(h.ns+"/prod"), tc.name)
		}
	}
	env := h.getEnv("prod")
	g.Expect(env.Status.LatestBuild).To(Equal(recorded))
	g.Expect(h.sim.Calls("RegisterTaskDefinition")).To(Equal(1))
	g.Expect(h.sim.Calls("UpdateService")).To(Equal(1))

	// The conflict is told to the Environment's owner as a Warning Event.
	g.Eventually(func() []string {
		list := &eventsv1.EventList{}
		_ = k8sClient.List(context.Background(), list, client.InNamespace(h.ns))
		var reasons []string
		for _, e := range list.Items {
			if e.Type == "Warning" {
				reasons = append(reasons, e.Reason)
			}
		}
		return reasons
	}, timeout, poll).Should(ContainElement(receiver.EventBuildConflict))
}

func TestEventBridgeECRPushDeploysByDigest(t *testing.T) {
	h := newHarness(t)
	g := h.g
	h.seedService("prod", "shop-api", image("v1"))
	h.createEnv("prod", func(e *deployv1.Environment) { e.Spec.Application = "my-repository-name"; e.Spec.Branch = "" })
	h.setTenantKeys(h.ns, map[string]string{receiver.SecretEventBridgeKey: eventKeyA})
	h.startManager()
	const want = "123456789012.dkr.ecr.us-west-2.amazonaws.com/my-repository-name@sha256:7f5b2640fe6fb4f46592dfd3410c4a79dac4f89e4782432e0378abcd12345678"

	post := func(body []byte) reply {
		// An API destination with a BASIC connection: user autodeploy, the key as password.
		req, err := http.NewRequest(http.MethodPost, h.mgr.receiverURL+eventsPath(h.ns), strings.NewReader(string(body)))
		g.Expect(err).NotTo(HaveOccurred())
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
		req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("autodeploy:"+eventKeyA)))
		return h.do(req)
	}
	// AWS's documentation example, verbatim, has a 60-digit digest: no valid image.
	r := post(eventFixture("aws-doc-ecr-image-action-push.json"))
	g.Expect(r.Code).To(Equal(http.StatusBadRequest), r.Raw)
	g.Expect(r.Body["error"]).To(ContainSubstring(`"image"`))

	r = post(eventFixture("ecr-push.json"))
	g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
	g.Eventually(h.env("prod"), timeout, poll).Should(WithTransform(deployedImage, Equal(want)))
	g.Eventually(func() string { return h.webImage("prod", "shop-api") }, timeout, poll).Should(Equal(want))

	r = post(eventFixture("ecr-push.json"))
	g.Expect(r.Code).To(Equal(http.StatusOK), r.Raw)
	g.Expect(r.Body["result"]).To(Equal("duplicate"))
	// A deleted image is no build.
	r = post(editEvent(eventFixture("ecr-push.json"), func(ev map[string]any) { ev["id"] = "delete"; evDetail(ev)["action-type"] = "DELETE" }))
	g.Expect(r.Code).To(Equal(http.StatusOK), r.Raw)
	g.Expect(r.Body["result"]).To(Equal("ignored"))
	g.Expect(h.sim.Calls("UpdateService")).To(Equal(1))
}

func TestReplayedSignedManifestChangesNothing(t *testing.T) {
	h := newHarness(t)
	g := h.g
	h.createEnv("prod", func(e *deployv1.Environment) { e.Spec.AutoDeploy = false })
	h.startManager()

	ts := time.Now()
	body := newBuild(5).body()
	r := h.postSigned(body, testKey, ts)
	g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)

	// The Environment is recreated: without replay protection the captured request would
	// record build 5 on it again.
	g.Expect(k8sClient.Delete(context.Background(), h.getEnv("prod"))).To(Succeed())
	g.Eventually(h.env("prod"), timeout, poll).Should(BeNil())
	h.createEnv("prod", func(e *deployv1.Environment) { e.Spec.AutoDeploy = false })
	// Replays answer 200 duplicate and write nothing; once the receiver's cache has the new
	// Environment, the answer lists it, so the replay did reach it.
	g.Eventually(func() []any {
		r := h.postSigned(body, testKey, ts)
		g.Expect(r.Code).To(Equal(http.StatusOK), r.Raw)
		g.Expect(r.Body["result"]).To(Equal("duplicate"))
		g.Expect(r.Body["updated"]).To(BeEmpty())
		dup, _ := r.Body["duplicate"].([]any)
		return dup
	}, timeout, poll).Should(ContainElement(h.ns + "/prod"))
	g.Expect(h.getEnv("prod").Status.LatestBuild).To(BeNil())

	// The same manifest signed anew (a genuine resend by the sender) is processed.
	r = h.postSigned(body, testKey, ts.Add(-time.Second))
	g.Expect(r.Code).To(Equal(http.StatusAccepted), r.Raw)
	g.Expect(latestNumber(h.getEnv("prod"))).To(Equal(int64(5)))
}

func TestRateLimitAnswers429WithRetryAfter(t *testing.T) {
	h := newHarness(t, withReceiver(func(o *app.ReceiverOptions) { o.Rate, o.Burst = 0.001, 2 }))
	g := h.g
	nsB := h.addNamespace("b")
	for _, ns := range []string{h.ns, nsB} {
		h.createEnvIn(ns, "prod", func(e *deployv1.Environment) { e.Spec.AutoDeploy = false })
	}
	h.setTenantKeys(h.ns, map[string]string{receiver.SecretManifestKey: keyA})
	h.setTenantKeys(nsB, map[string]string{receiver.SecretManifestKey: keyB})
	h.startManager()
	now := time.Now()

	// Requests without the key take no token: a stranger cannot use up a team's budget.
	for range 5 {
		g.Expect(h.postSignedTo(manifestsPath(h.ns), newBuild(1).body(), []byte(keyB), now).Code).To(Equal(http.StatusUnauthorized))
	}
	g.Expect(h.postSignedTo(manifestsPath(h.ns), newBuild(1).body(), []byte(keyA), now).Code).To(Equal(http.StatusAccepted))
	g.Expect(h.postSignedTo(manifestsPath(h.ns), newBuild(2).body(), []byte(keyA), now).Code).To(Equal(http.StatusAccepted))

	body := newBuild(3).body()
	req, err := http.NewRequest(http.MethodPost, h.mgr.receiverURL+manifestsPath(h.ns), strings.NewReader(string(body)))
	g.Expect(err).NotTo(HaveOccurred())
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(manifest.TimestampHeader, fmt.Sprint(now.Unix()))
	req.Header.Set(manifest.SignatureHeader, manifest.Sign([]byte(keyA), now, body))
	resp, err := http.DefaultClient.Do(req)
	g.Expect(err).NotTo(HaveOccurred())
	resp.Body.Close()
	g.Expect(resp.StatusCode).To(Equal(http.StatusTooManyRequests))
	retryAfter, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(retryAfter).To(BeNumerically(">=", 1))
	g.Expect(latestNumber(h.getEnvIn(h.ns, "prod"))).To(Equal(int64(2)), "the limited request wrote nothing")

	// Other tenants, and the cluster-wide route ("*"), have their own budgets.
	g.Expect(h.postSignedTo(manifestsPath(nsB), newBuild(3).body(), []byte(keyB), now).Code).To(Equal(http.StatusAccepted))
	g.Expect(h.postSignedTo(receiver.ManifestPath, newBuild(4).body(), testKey, now).Code).To(Equal(http.StatusAccepted))
}
