package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/app"
	"github.com/autodeploy-dev/autodeploy/internal/manifest"
	"github.com/autodeploy-dev/autodeploy/internal/metrics"
)

// endpoint is a local HTTP server that stands for a notification endpoint: it checks each
// request against the real format of its kind (check), can answer a script of failures
// first, and can hang until released.
type endpoint struct {
	srv *httptest.Server
	// check validates a request; its error is recorded in bad and answered with 400.
	check func(r *http.Request, body []byte) error
	// answer writes the success reply of an accepted request.
	answer func(w http.ResponseWriter, r *http.Request, body []byte)

	mu       sync.Mutex
	accepted []map[string]any
	bad      []string
	attempts int
	inFlight int
	script   []scripted
	hang     chan struct{}
}

type scripted struct {
	code       int
	retryAfter string
	body       string
}

func newEndpoint(t *testing.T, check func(*http.Request, []byte) error, answer func(http.ResponseWriter, *http.Request, []byte)) *endpoint {
	ep := &endpoint{check: check, answer: answer}
	ep.srv = httptest.NewServer(http.HandlerFunc(ep.serve))
	t.Cleanup(func() {
		ep.release()
		ep.srv.Close()
	})
	return ep
}

func (ep *endpoint) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	ep.mu.Lock()
	ep.attempts++
	hang := ep.hang
	ep.inFlight++
	ep.mu.Unlock()
	defer func() {
		ep.mu.Lock()
		ep.inFlight--
		ep.mu.Unlock()
	}()
	if hang != nil {
		select {
		case <-hang:
		case <-r.Context().Done():
			return
		}
	}
	ep.mu.Lock()
	if len(ep.script) > 0 {
		s := ep.script[0]
		ep.script = ep.script[1:]
		ep.mu.Unlock()
		if s.retryAfter != "" {
			w.Header().Set("Retry-After", s.retryAfter)
		}
		w.WriteHeader(s.code)
		_, _ = io.WriteString(w, s.body)
		return
	}
	ep.mu.Unlock()
	if err := ep.check(r, body); err != nil {
		ep.mu.Lock()
		ep.bad = append(ep.bad, err.Error())
		ep.mu.Unlock()
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, "invalid_payload")
		return
	}
	var m map[string]any
	_ = json.Unmarshal(body, &m)
	ep.mu.Lock()
	ep.accepted = append(ep.accepted, m)
	ep.mu.Unlock()
	ep.answer(w, r, body)
}

// fail makes the next requests get these answers before the endpoint works again.
func (ep *endpoint) fail(s ...scripted) {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	ep.script = append(ep.script, s...)
}

// hangRequests makes requests block until release (or until the client gives up).
func (ep *endpoint) hangRequests() {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	ep.hang = make(chan struct{})
}

func (ep *endpoint) release() {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if ep.hang != nil {
		close(ep.hang)
		ep.hang = nil
	}
}

func (ep *endpoint) requests() []map[string]any {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	return append([]map[string]any(nil), ep.accepted...)
}

func (ep *endpoint) malformed() []string {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	return append([]string(nil), ep.bad...)
}

func (ep *endpoint) attemptCount() int {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	return ep.attempts
}

func (ep *endpoint) inFlightCount() int {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	return ep.inFlight
}

// outcomes returns the outcome of each accepted webhook payload, in order.
func (ep *endpoint) outcomes() []string {
	var out []string
	for _, m := range ep.requests() {
		o, _ := m["outcome"].(string)
		out = append(out, o)
	}
	return out
}

// newWebhook is a webhook receiver that verifies the signature with the receiver's own
// verification (manifest.Verify) and checks the payload's fields.
func newWebhook(t *testing.T, key []byte) *endpoint { return newWebhookAt(t, key, time.Now) }

// newWebhookAt is newWebhook checking the signature's time against now (the manager's clock,
// when a test gives it one).
func newWebhookAt(t *testing.T, key []byte, now func() time.Time) *endpoint {
	return newEndpoint(t, func(r *http.Request, body []byte) error {
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			return fmt.Errorf("%s with Content-Type %q", r.Method, r.Header.Get("Content-Type"))
		}
		if err := manifest.Verify([][]byte{key}, r.Header.Get(manifest.TimestampHeader), r.Header.Get(manifest.SignatureHeader), body, now()); err != nil {
			return fmt.Errorf("signature: %w", err)
		}
		var p map[string]any
		if err := json.Unmarshal(body, &p); err != nil {
			return err
		}
		for _, f := range []string{"id", "outcome", "namespace", "environment", "application", "deploy", "message", "notification"} {
			if s, _ := p[f].(string); s == "" {
				return fmt.Errorf("payload field %q missing", f)
			}
		}
		return nil
	}, func(w http.ResponseWriter, _ *http.Request, _ []byte) { w.WriteHeader(http.StatusNoContent) })
}

// newSlack is a Slack incoming webhook: a JSON body with text (and optionally blocks of
// known types), answered 200 "ok"; anything else is answered 400 invalid_payload.
func newSlack(t *testing.T) *endpoint {
	return newEndpoint(t, func(r *http.Request, body []byte) error {
		if r.Method != http.MethodPost || r.URL.Path != "/services/T000/B000/XXXX" {
			return fmt.Errorf("%s %s", r.Method, r.URL.Path)
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			return fmt.Errorf("Content-Type %q", ct)
		}
		var m struct {
			Text   *string `json:"text"`
			Blocks []struct {
				Type string `json:"type"`
				Text *struct {
					Type string `json:"type"`
					Text string `json:"text"`
				} `json:"text"`
				Elements []struct {
					Type string `json:"type"`
					Text string `json:"text"`
				} `json:"elements"`
			} `json:"blocks"`
		}
		if err := json.Unmarshal(body, &m); err != nil {
			return err
		}
		if m.Text == nil || *m.Text == "" {
			return fmt.Errorf("no text")
		}
		for _, b := range m.Blocks {
			switch b.Type {
			case "section":
				if b.Text == nil || (b.Text.Type != "mrkdwn" && b.Text.Type != "plain_text") || b.Text.Text == "" || len(b.Text.Text) > 3000 {
					return fmt.Errorf("invalid section block")
				}
			case "context":
				if len(b.Elements) == 0 || len(b.Elements) > 10 {
					return fmt.Errorf("invalid context block")
				}
			default:
				return fmt.Errorf("block type %q", b.Type)
			}
		}
		return nil
	}, func(w http.ResponseWriter, _ *http.Request, _ []byte) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = io.WriteString(w, "ok")
	})
}

func (ep *endpoint) slackURL() string { return ep.srv.URL + "/services/T000/B000/XXXX" }

// githubAPI is GitHub's deployments API: POST /repos/{owner}/{repo}/deployments and
// POST /repos/{owner}/{repo}/deployments/{id}/statuses, with the headers GitHub documents.
type githubAPI struct {
	*endpoint
	mu          sync.Mutex
	deployments []*ghDeployment
}

type ghDeployment struct {
	ID          int64
	Repo        string
	Ref         string
	Environment string
	States      []string
}

var (
	ghDeploymentsPath = regexp.MustCompile(`^/repos/([^/]+/[^/]+)/deployments$`)
	ghStatusesPath    = regexp.MustCompile(`^/repos/([^/]+/[^/]+)/deployments/(\d+)/statuses$`)
	ghStates          = map[string]bool{"error": true, "failure": true, "inactive": true, "in_progress": true, "queued": true, "pending": true, "success": true}
)

func newGitHub(t *testing.T, token string) *githubAPI {
	gh := &githubAPI{}
	gh.endpoint = newEndpoint(t, func(r *http.Request, body []byte) error {
		if r.Method != http.MethodPost {
			return fmt.Errorf("method %s", r.Method)
		}
		if r.Header.Get("Authorization") != "Bearer "+token || r.Header.Get("Accept") != "application/vnd.github+json" ||
			r.Header.Get("X-GitHub-Api-Version") != "2022-11-28" {
			return fmt.Errorf("headers %v", r.Header)
		}
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			return err
		}
		switch {
		case ghDeploymentsPath.MatchString(r.URL.Path):
			if s, _ := m["ref"].(string); s == "" {
				return fmt.Errorf("no ref")
			}
			if s, _ := m["environment"].(string); s == "" {
				return fmt.Errorf("no environment")
			}
			if am, ok := m["auto_merge"].(bool); !ok || am {
				return fmt.Errorf("auto_merge must be false")
			}
			if rc, ok := m["required_contexts"].([]any); !ok || len(rc) != 0 {
				return fmt.Errorf("required_contexts must be []")
			}
		case ghStatusesPath.MatchString(r.URL.Path):
			if s, _ := m["state"].(string); !ghStates[s] {
				return fmt.Errorf("state %q", m["state"])
			}
			if d, _ := m["description"].(string); len([]rune(d)) > 140 {
				return fmt.Errorf("description longer than 140 characters")
			}
			id, _ := strconv.ParseInt(ghStatusesPath.FindStringSubmatch(r.URL.Path)[2], 10, 64)
			if gh.find(id) == nil {
				return fmt.Errorf("no deployment %d", id)
			}
		default:
			return fmt.Errorf("path %s", r.URL.Path)
		}
		return nil
	}, func(w http.ResponseWriter, r *http.Request, body []byte) {
		var m map[string]any
		_ = json.Unmarshal(body, &m)
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		gh.mu.Lock()
		defer gh.mu.Unlock()
		if sm := ghDeploymentsPath.FindStringSubmatch(r.URL.Path); sm != nil {
			d := &ghDeployment{ID: int64(1000 + len(gh.deployments)), Repo: sm[1], Ref: m["ref"].(string), Environment: m["environment"].(string)}
			gh.deployments = append(gh.deployments, d)
			w.WriteHeader(http.StatusCreated)
			_ = json.NewEncoder(w).Encode(map[string]any{"id": d.ID, "ref": d.Ref, "environment": d.Environment, "sha": d.Ref})
			return
		}
		sm := ghStatusesPath.FindStringSubmatch(r.URL.Path)
		id, _ := strconv.ParseInt(sm[2], 10, 64)
		for _, d := range gh.deployments {
			if d.ID == id {
				d.States = append(d.States, m["state"].(string))
			}
		}
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(map[string]any{"id": 1, "state": m["state"]})
	})
	return gh
}

func (gh *githubAPI) find(id int64) *ghDeployment {
	gh.mu.Lock()
	defer gh.mu.Unlock()
	for _, d := range gh.deployments {
		if d.ID == id {
			return d
		}
	}
	return nil
}

// snapshot returns a copy of the deployments GitHub holds.
func (gh *githubAPI) snapshot() []ghDeployment {
	gh.mu.Lock()
	defer gh.mu.Unlock()
	var out []ghDeployment
	for _, d := range gh.deployments {
		c := *d
		c.States = append([]string(nil), d.States...)
		out = append(out, c)
	}
	return out
}

// quickNotifications makes the notification controller retry quickly, with a per-request
// timeout.
func (h *harness) quickNotifications(timeout time.Duration) {
	h.appOpts = append(h.appOpts, func(o *app.Options) {
		o.Notifications = app.NotificationOptions{Timeout: timeout, RetryBaseDelay: 50 * time.Millisecond, RetryMaxDelay: 400 * time.Millisecond}
	})
}

func (h *harness) createSecret(name string, data map[string]string) {
	h.t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: h.ns}, StringData: data}
	h.g.Expect(k8sClient.Create(context.Background(), s)).To(Succeed())
}

func (h *harness) createNotification(name string, p deployv1.NotificationProvider, outcomes ...string) {
	h.t.Helper()
	n := &deployv1.Notification{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: h.ns},
		Spec:       deployv1.NotificationSpec{Outcomes: outcomes, Provider: p},
	}
	h.g.Expect(k8sClient.Create(context.Background(), n)).To(Succeed())
}

var allOutcomes = []string{
	deployv1.OutcomeDeployStarted, deployv1.OutcomeRolloutCompleted, deployv1.OutcomeRolloutFailed,
	deployv1.OutcomeRolledBack, deployv1.OutcomeHeld, deployv1.OutcomeAwaitingApproval, deployv1.OutcomeStalled,
}

// notification returns a function for Eventually that fetches the Notification.
func (h *harness) notification(name string) func() *deployv1.Notification {
	return func() *deployv1.Notification {
		n := &deployv1.Notification{}
		if err := k8sClient.Get(context.Background(), types.NamespacedName{Namespace: h.ns, Name: name}, n); err != nil {
			return nil
		}
		return n
	}
}

// notificationReady returns "<status>/<reason>" of a Notification's Ready condition.
func notificationReady(n *deployv1.Notification) string {
	if n == nil {
		return ""
	}
	for _, c := range n.Status.Conditions {
		if c.Type == deployv1.ReadyCondition {
			return string(c.Status) + "/" + c.Reason
		}
	}
	return ""
}

func notificationMessage(n *deployv1.Notification) string {
	if n == nil {
		return ""
	}
	for _, c := range n.Status.Conditions {
		if c.Type == deployv1.ReadyCondition {
			return c.Message
		}
	}
	return ""
}

// deliveries reads the deliveries counter of a provider and result.
func deliveries(provider, result string) float64 {
	return testutil.ToFloat64(metrics.Notifications.WithLabelValues(provider, result))
}

func countOf(list []string, s string) int {
	n := 0
	for _, x := range list {
		if x == s {
			n++
		}
	}
	return n
}

// touchStatus writes the Environment's status with nothing new for notifications: a
// condition of a type autodeploy does not use, with a new message each time.
func (h *harness) touchStatus(name string) {
	h.t.Helper()
	h.g.Eventually(func() error {
		env := h.getEnv(name)
		meta.SetStatusCondition(&env.Status.Conditions, metav1.Condition{
			Type: "example.com/Touched", Status: metav1.ConditionTrue, Reason: "Touched", Message: time.Now().Format(time.RFC3339Nano),
		})
		return k8sClient.Status().Update(context.Background(), env)
	}, timeout, 10*time.Millisecond).Should(Succeed())
}
