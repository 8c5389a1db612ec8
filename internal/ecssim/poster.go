package ecssim

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// EventPoster delivers the simulator's events (WithEventSink(p.Enqueue)) to an HTTP endpoint
// as an EventBridge rule with an API destination does: asynchronously, in a queue that never
// blocks the simulator, as JSON with an API key header, retrying what API destinations retry
// (401, 407, 409, 429, 5xx and connection errors) with exponential backoff, and dropping an
// event after MaxAttempts or on any other answer.
type EventPoster struct {
	// APIKey is sent in the Header header (the API destination's connection); none if empty.
	APIKey, Header string
	// Workers deliver in parallel (1 if zero).
	Workers int
	// Backoff is the first delay between attempts, doubling up to MaxBackoff; MaxAttempts
	// bounds the attempts per event (0: until accepted or the context ends).
	Backoff, MaxBackoff time.Duration
	MaxAttempts         int
	// Logf, if set, reports dropped events.
	Logf func(format string, args ...any)
	// Client sends the requests (a client with a 5 s timeout if nil).
	Client *http.Client

	url    atomic.Pointer[string]
	mu     sync.Mutex
	queue  [][]byte
	signal chan struct{}
	once   sync.Once

	delivered, retried, dropped atomic.Int64
}

// SetURL sets (or changes) where events are posted; events wait in the queue until it is set.
func (p *EventPoster) SetURL(url string) { p.url.Store(&url) }

func (p *EventPoster) init() { p.once.Do(func() { p.signal = make(chan struct{}, 1) }) }

// Enqueue queues an event; it is the simulator's event sink.
func (p *EventPoster) Enqueue(event []byte) {
	p.init()
	p.mu.Lock()
	p.queue = append(p.queue, append([]byte(nil), event...))
	p.mu.Unlock()
	p.wake()
}

func (p *EventPoster) wake() {
	select {
	case p.signal <- struct{}{}:
	default:
	}
}

// Delivered, Retried and Dropped count events accepted (2xx), attempts retried and events
// given up on.
func (p *EventPoster) Delivered() int { return int(p.delivered.Load()) }
func (p *EventPoster) Retried() int   { return int(p.retried.Load()) }
func (p *EventPoster) Dropped() int   { return int(p.dropped.Load()) }

func (p *EventPoster) next(ctx context.Context) ([]byte, bool) {
	p.init()
	for {
		p.mu.Lock()
		if len(p.queue) > 0 {
			ev := p.queue[0]
			p.queue = p.queue[1:]
			more := len(p.queue) > 0
			p.mu.Unlock()
			if more {
				p.wake()
			}
			return ev, true
		}
		p.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, false
		case <-p.signal:
		}
	}
}

// Run delivers events until ctx ends.
func (p *EventPoster) Run(ctx context.Context) {
	client := p.Client
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Second}
	}
	var wg sync.WaitGroup
	for range max(1, p.Workers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				ev, ok := p.next(ctx)
				if !ok {
					return
				}
				p.post(ctx, client, ev)
			}
		}()
	}
	wg.Wait()
}

func (p *EventPoster) post(ctx context.Context, client *http.Client, ev []byte) {
	backoff := p.Backoff
	for attempt := 1; ; attempt++ {
		status, err := p.send(ctx, client, ev)
		switch {
		case err == nil && status/100 == 2:
			p.delivered.Add(1)
			return
		case err == nil && status != 401 && status != 407 && status != 409 && status != 429 && status < 500:
			p.drop("event rejected with HTTP %d", status)
			return
		case ctx.Err() != nil:
			return
		case p.MaxAttempts > 0 && attempt >= p.MaxAttempts:
			p.drop("giving up on an event after %d attempts: HTTP %d, %v", attempt, status, err)
			return
		}
		p.retried.Add(1)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		if backoff *= 2; p.MaxBackoff > 0 && backoff > p.MaxBackoff {
			backoff = p.MaxBackoff
		}
	}
}

func (p *EventPoster) drop(format string, args ...any) {
	p.dropped.Add(1)
	if p.Logf != nil {
		p.Logf(format, args...)
	}
}

// send posts ev once (errNoURL while no URL is set).
func (p *EventPoster) send(ctx context.Context, client *http.Client, ev []byte) (int, error) {
	u := p.url.Load()
	if u == nil {
		return 0, errNoURL
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, *u, bytes.NewReader(ev))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("User-Agent", "Amazon/EventBridge/ApiDestinations")
	if p.APIKey != "" && p.Header != "" {
		req.Header.Set(p.Header, p.APIKey)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

type posterError string

func (e posterError) Error() string { return string(e) }

const errNoURL = posterError("no URL to post events to yet")
