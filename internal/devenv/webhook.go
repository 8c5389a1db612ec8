package devenv

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"sync"
	"time"

	"github.com/autodeploy-dev/autodeploy/internal/manifest"
	"github.com/autodeploy-dev/autodeploy/internal/notification"
)

// maxWebhookBody bounds the body the webhook receiver reads.
const maxWebhookBody = 1 << 20

// webhookReceiver is the endpoint of the run's webhook Notification: an HTTP server on the
// loopback interface that checks each request's signature with manifest.Verify, as any
// receiver of autodeploy's webhooks should, and prints each notification once.
type webhookReceiver struct {
	key []byte
	out io.Writer
	srv *http.Server
	url string

	mu   sync.Mutex
	seen map[string]bool
	got  []notification.Payload
}

// startWebhookReceiver listens on addr and serves until close.
func startWebhookReceiver(addr string, key []byte, out io.Writer) (*webhookReceiver, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("webhook receiver: %w", err)
	}
	w := &webhookReceiver{key: key, out: out, url: "http://" + ln.Addr().String() + "/",
		seen: map[string]bool{}}
	w.srv = &http.Server{
		Handler:           w,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
	go func() { _ = w.srv.Serve(ln) }()
	return w, nil
}

func (w *webhookReceiver) close() { _ = w.srv.Close() }

func (w *webhookReceiver) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(rw, "POST only", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxWebhookBody+1))
	if err != nil {
		http.Error(rw, "reading the body: "+err.Error(), http.StatusBadRequest)
		return
	}
	if len(body) > maxWebhookBody {
		http.Error(rw, "body too large", http.StatusRequestEntityTooLarge)
		return
	}
	if err := manifest.Verify([][]byte{w.key}, r.Header.Get(manifest.TimestampHeader), r.Header.Get(manifest.SignatureHeader), body, time.Now()); err != nil {
		fmt.Fprintf(w.out, "  [webhook] refused a request: %v\n", err)
		http.Error(rw, "unauthorized", http.StatusUnauthorized)
		return
	}
	var p notification.Payload
	if err := json.Unmarshal(body, &p); err != nil || p.ID == "" || p.Outcome == "" {
		if err == nil {
			err = errors.New("no id or outcome")
		}
		http.Error(rw, "not a notification: "+err.Error(), http.StatusBadRequest)
		return
	}
	w.mu.Lock()
	dup := w.seen[p.ID]
	if !dup {
		// Delivery is at least once: a notification seen before (same id) is dropped.
		w.seen[p.ID] = true
		w.got = append(w.got, p)
		fmt.Fprintf(w.out, "  [webhook] %-16s %-16s %s\n", p.Environment, p.Outcome, shortImages(p.Message))
	}
	w.mu.Unlock()
	rw.WriteHeader(http.StatusOK)
}

// notifications returns what was received so far, in arrival order.
func (w *webhookReceiver) notifications() []notification.Payload {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]notification.Payload(nil), w.got...)
}

// has reports whether env's outcome was received for build.
func (w *webhookReceiver) has(env, outcome string, build int64) bool {
	for _, p := range w.notifications() {
		if p.Environment == env && p.Outcome == outcome && p.Build != nil && p.Build.Number == build {
			return true
		}
	}
	return false
}

// ecrRegistry matches the registry part of an ECR image reference.
var ecrRegistry = regexp.MustCompile(`[0-9]{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com/`)

// shortImages shortens the ECR registry of the images in s to "…/", to keep lines short.
func shortImages(s string) string { return ecrRegistry.ReplaceAllString(s, "…/") }
