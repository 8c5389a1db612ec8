package ecssim_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/autodeploy-dev/autodeploy/internal/ecssim"
)

// TestEventPosterRetriesLikeAnAPIDestination: 5xx, 429 and connection errors are retried
// until accepted, other 4xx drop the event, MaxAttempts bounds the retries, the API key is
// sent, and events wait in the queue until a URL is set.
func TestEventPosterRetriesLikeAnAPIDestination(t *testing.T) {
	g := NewWithT(t)
	const wait = 20 * time.Second // for the poster's goroutines, on a busy machine
	var (
		mu    sync.Mutex
		codes = map[string][]int{ // body -> answers, in order; 200 once exhausted
			`{"n":1}`: {503, 429, 500},
			`{"n":2}`: {400},
			`{"n":3}`: {503, 503, 503, 503},
		}
		seen = map[string]int{}
		keys []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 64)
		n, _ := r.Body.Read(buf)
		body := string(buf[:n])
		mu.Lock()
		defer mu.Unlock()
		keys = append(keys, r.Header.Get("X-Api-Key"))
		seen[body]++
		if q := codes[body]; len(q) > 0 {
			codes[body] = q[1:]
			w.WriteHeader(q[0])
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()

	run := func(p *ecssim.EventPoster) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); p.Run(ctx) }()
		t.Cleanup(func() {
			cancel()
			<-done
		})
	}

	p := &ecssim.EventPoster{APIKey: "k3y", Header: "X-Api-Key", Workers: 2, Backoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond}
	run(p)
	p.Enqueue([]byte(`{"n":1}`))
	p.Enqueue([]byte(`{"n":2}`))
	// No URL yet: the events are retried, not lost.
	g.Eventually(p.Retried, wait).Should(BeNumerically(">", 0))
	g.Expect(p.Delivered()).To(BeZero())
	p.SetURL(srv.URL)
	g.Eventually(func() int { return p.Delivered() + p.Dropped() }, wait).Should(Equal(2))
	g.Expect(p.Delivered()).To(Equal(1), "n:1 is delivered after three retried answers")
	g.Expect(p.Dropped()).To(Equal(1), "n:2 is rejected with 400, not retried")

	bounded := &ecssim.EventPoster{APIKey: "k3y", Header: "X-Api-Key", Backoff: time.Millisecond, MaxAttempts: 4}
	bounded.SetURL(srv.URL)
	run(bounded)
	bounded.Enqueue([]byte(`{"n":3}`))
	g.Eventually(bounded.Dropped, wait).Should(Equal(1), "n:3 runs out of attempts")

	mu.Lock()
	defer mu.Unlock()
	g.Expect(seen).To(Equal(map[string]int{`{"n":1}`: 4, `{"n":2}`: 1, `{"n":3}`: 4}))
	g.Expect(keys).To(HaveEach("k3y"))
}
