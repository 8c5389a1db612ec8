// Package ecssim is an in-process simulator of the Amazon ECS API.
//
// It speaks the real ECS wire protocol (awsJson1_1: POST /, the operation in
// the X-Amz-Target header, JSON bodies, epoch-second timestamps, errors
// carried by a non-2xx status, the X-Amzn-ErrorType header and a
// {"__type","message"} body), so that the unmodified
// github.com/aws/aws-sdk-go-v2/service/ecs client can be pointed at it with
// BaseEndpoint and aws.AnonymousCredentials{}.
//
// The simulator implements the subset of ECS the product uses: clusters,
// task definitions (stored verbatim, so every field a client registers is
// echoed back) and services with deployments. Deployments progress without
// goroutines: an IN_PROGRESS deployment is observed as COMPLETED by the first
// request made once the rollout duration has passed on the simulator's clock.
//
// Besides the wire protocol the Server offers Go methods for seeding,
// observation (call counts, snapshots) and fault injection, plus a small
// admin HTTP surface under /_sim/ (see admin.go).
package ecssim

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// TargetPrefix is the X-Amz-Target prefix of every ECS operation.
const TargetPrefix = "AmazonEC2ContainerServiceV20141113."

const (
	defaultAccount = "123456789012"
	defaultRegion  = "us-east-1"
	maxBodyBytes   = 10 << 20
	jsonContent    = "application/x-amz-json-1.1"
)

// Server is an ECS API simulator. It implements http.Handler; use Start to
// serve it on a loopback port. All methods are safe for concurrent use.
type Server struct {
	account         string
	region          string
	clock           func() time.Time
	rolloutDuration time.Duration
	buckets         map[Category]Bucket

	admin *http.ServeMux

	mu        sync.Mutex
	clusters  map[string]*cluster
	families  map[string][]*taskDef // family -> revisions, index revision-1
	limiters  map[Category]*rate.Limiter
	calls     map[string]int
	throttled map[string]int
	total     int
	faults    map[string]*faultState
	latency   map[string]time.Duration

	httpMu  sync.Mutex
	httpSrv *http.Server
}

// Option configures a Server.
type Option func(*Server)

// WithAccount sets the AWS account id used in ARNs (default "123456789012").
func WithAccount(account string) Option { return func(s *Server) { s.account = account } }

// WithRegion sets the region used in ARNs (default "us-east-1").
func WithRegion(region string) Option { return func(s *Server) { s.region = region } }

// WithClock replaces the wall clock. The clock drives timestamps, rollout
// progression and the throttling token buckets, so a fake clock makes all of
// them deterministic.
func WithClock(now func() time.Time) Option { return func(s *Server) { s.clock = now } }

// WithRolloutDuration sets how long a new deployment stays IN_PROGRESS on the
// simulator's clock before requests observe it as COMPLETED. The default, 0,
// means the response that creates the deployment shows IN_PROGRESS and any
// later request shows COMPLETED.
func WithRolloutDuration(d time.Duration) Option {
	return func(s *Server) { s.rolloutDuration = d }
}

// WithThrottling enables token-bucket throttling with the given buckets.
// Operations outside the given categories are not throttled. A throttled call
// fails with 400 ThrottlingException "Rate exceeded".
func WithThrottling(buckets map[Category]Bucket) Option {
	return func(s *Server) {
		s.buckets = make(map[Category]Bucket, len(buckets))
		for c, b := range buckets {
			s.buckets[c] = b
		}
	}
}

// WithAWSThrottling enables throttling with the buckets AWS publishes for the
// ECS API (see AWSBuckets).
func WithAWSThrottling() Option { return WithThrottling(AWSBuckets()) }

// New returns a Server with no clusters, task definitions or services.
func New(opts ...Option) *Server {
	s := &Server{
		account:   defaultAccount,
		region:    defaultRegion,
		clock:     time.Now,
		clusters:  map[string]*cluster{},
		families:  map[string][]*taskDef{},
		calls:     map[string]int{},
		throttled: map[string]int{},
		faults:    map[string]*faultState{},
		latency:   map[string]time.Duration{},
	}
	for _, o := range opts {
		o(s)
	}
	s.limiters = newLimiters(s.buckets, s.clock())
	s.admin = s.adminMux()
	return s
}

// Start serves the simulator on 127.0.0.1 with a random port and returns its
// base URL (for example "http://127.0.0.1:41234"). Close stops it.
func (s *Server) Start() (string, error) { return s.StartOn("127.0.0.1:0") }

// StartOn serves on addr (host:port; port 0 picks a free one) and returns the base URL.
func (s *Server) StartOn(addr string) (string, error) {
	s.httpMu.Lock()
	defer s.httpMu.Unlock()
	if s.httpSrv != nil {
		return "", errors.New("ecssim: server already started")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("ecssim: listen: %w", err)
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	s.httpSrv = srv
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), nil
}

// Close stops the listener started by Start and closes open connections.
// It is a no-op if the server was not started.
func (s *Server) Close() {
	s.httpMu.Lock()
	defer s.httpMu.Unlock()
	if s.httpSrv != nil {
		_ = s.httpSrv.Close()
		s.httpSrv = nil
	}
}

// ServeHTTP serves the ECS wire protocol on every path except /_sim/, which
// is the admin surface.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/_sim/") {
		s.admin.ServeHTTP(w, r)
		return
	}
	w.Header().Set("X-Amzn-Requestid", newRequestID())

	op := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), TargetPrefix)
	if !strings.HasPrefix(r.Header.Get("X-Amz-Target"), TargetPrefix) {
		op = ""
	}
	s.mu.Lock()
	s.total++
	if op != "" {
		s.calls[op]++
	}
	delay := s.latency[op]
	s.mu.Unlock()

	if r.Method != http.MethodPost {
		writeError(w, &apiError{Status: http.StatusMethodNotAllowed, Code: "UnknownOperationException",
			Message: "Method " + r.Method + " is not allowed; the ECS API accepts POST only."})
		return
	}
	h, ok := operations[op]
	if !ok {
		writeError(w, &apiError{Status: http.StatusBadRequest, Code: "UnknownOperationException",
			Message: fmt.Sprintf("Unknown operation %q.", r.Header.Get("X-Amz-Target"))})
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
	if err != nil || len(body) > maxBodyBytes {
		writeError(w, errSerialization("could not read request body"))
		return
	}
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	if delay > 0 {
		if err := sleepCtx(r.Context(), delay); err != nil {
			return // client went away
		}
	}

	out, err := s.invoke(op, h, body)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// invoke runs one counted wire operation under the lock: it advances
// rollouts, applies throttling and injected faults, then the handler.
func (s *Server) invoke(op string, h opHandler, body []byte) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock()
	s.advanceLocked(now)
	if s.throttleLocked(op, now) {
		s.throttled[op]++
		return nil, &apiError{Status: http.StatusBadRequest, Code: "ThrottlingException", Message: "Rate exceeded"}
	}
	if err := s.faultLocked(op); err != nil {
		return nil, err
	}
	return h(s, body)
}

// opHandler implements one ECS operation. It runs with s.mu held and returns
// the response document or an error (an *apiError for modelled errors).
type opHandler func(s *Server, body []byte) (any, error)

// operations maps ECS operation names to their handlers.
var operations map[string]opHandler

func init() {
	operations = map[string]opHandler{
		"CreateCluster":            (*Server).opCreateCluster,
		"DescribeClusters":         (*Server).opDescribeClusters,
		"RegisterTaskDefinition":   (*Server).opRegisterTaskDefinition,
		"DescribeTaskDefinition":   (*Server).opDescribeTaskDefinition,
		"DeregisterTaskDefinition": (*Server).opDeregisterTaskDefinition,
		"ListTaskDefinitions":      (*Server).opListTaskDefinitions,
		"CreateService":            (*Server).opCreateService,
		"DescribeServices":         (*Server).opDescribeServices,
		"UpdateService":            (*Server).opUpdateService,
		"ListServices":             (*Server).opListServices,
	}
}

// apiError is an ECS error response. It also serves as the error returned by
// the seeding methods, so they report exactly what the wire would.
type apiError struct {
	Status  int
	Code    string
	Message string
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

func errClient(format string, args ...any) *apiError {
	return &apiError{Status: http.StatusBadRequest, Code: "ClientException", Message: fmt.Sprintf(format, args...)}
}

func errInvalidParameter(format string, args ...any) *apiError {
	return &apiError{Status: http.StatusBadRequest, Code: "InvalidParameterException", Message: fmt.Sprintf(format, args...)}
}

func errSerialization(msg string) *apiError {
	return &apiError{Status: http.StatusBadRequest, Code: "SerializationException", Message: msg}
}

func errClusterNotFound() *apiError {
	return &apiError{Status: http.StatusBadRequest, Code: "ClusterNotFoundException", Message: "Cluster not found."}
}

func errServiceNotFound() *apiError {
	return &apiError{Status: http.StatusBadRequest, Code: "ServiceNotFoundException", Message: "Service not found."}
}

func writeError(w http.ResponseWriter, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		ae = &apiError{Status: http.StatusInternalServerError, Code: "ServerException", Message: err.Error()}
	}
	w.Header().Set("X-Amzn-ErrorType", ae.Code)
	writeJSON(w, ae.Status, map[string]string{"__type": ae.Code, "message": ae.Message})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		w.Header().Set("X-Amzn-ErrorType", "ServerException")
		b, _ = json.Marshal(map[string]string{"__type": "ServerException", "message": err.Error()})
	}
	w.Header().Set("Content-Type", jsonContent)
	w.Header().Set("Content-Length", fmt.Sprint(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// decode unmarshals a request body into a typed request.
func decode(body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		return errSerialization("Could not parse request body: " + err.Error())
	}
	return nil
}

// decodeRaw unmarshals a request body into a generic JSON object, keeping
// numbers exactly as sent.
func decodeRaw(body []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, errSerialization("Could not parse request body: " + err.Error())
	}
	if m == nil {
		m = map[string]any{}
	}
	return m, nil
}

// epoch renders t the way the ECS API does: epoch seconds as a JSON number
// with millisecond precision.
func epoch(t time.Time) float64 { return float64(t.UnixMilli()) / 1000 }

func (s *Server) arn(resource string) string {
	return "arn:aws:ecs:" + s.region + ":" + s.account + ":" + resource
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// deepCopy returns a deep copy of a decoded JSON value.
func deepCopy(v any) any {
	switch v := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		l := make([]any, len(v))
		for i, e := range v {
			l[i] = deepCopy(e)
		}
		return l
	default:
		return v
	}
}

func copyMap(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	return deepCopy(m).(map[string]any)
}

// Calls returns how many wire calls of op were received (including failed,
// faulted and throttled ones).
func (s *Server) Calls(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[op]
}

// TotalCalls returns how many wire calls were received in all.
func (s *Server) TotalCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// Throttled returns how many calls of op were throttled.
func (s *Server) Throttled(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.throttled[op]
}

// ResetCalls sets all call and throttle counters to zero.
func (s *Server) ResetCalls() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.calls)
	clear(s.throttled)
	s.total = 0
}

// callCounts returns copies of the counters.
func (s *Server) callCounts() (calls, throttled map[string]int, total int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	calls = make(map[string]int, len(s.calls))
	for k, v := range s.calls {
		calls[k] = v
	}
	throttled = make(map[string]int, len(s.throttled))
	for k, v := range s.throttled {
		throttled[k] = v
	}
	return calls, throttled, s.total
}
