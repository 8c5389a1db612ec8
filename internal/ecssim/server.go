// Package ecssim is an in-process simulator of the Amazon ECS API, with the
// bits of STS and ECR around it that a deployer needs.
//
// It speaks the real ECS wire protocol (awsJson1_1: POST /, the operation in
// the X-Amz-Target header, JSON bodies, epoch-second timestamps, errors
// carried by a non-2xx status, the X-Amzn-ErrorType header and a
// {"__type","message"} body), so that the unmodified
// github.com/aws/aws-sdk-go-v2/service/ecs client can be pointed at it with
// BaseEndpoint and aws.AnonymousCredentials{} (or any credentials). The same
// listener serves STS AssumeRole and GetCallerIdentity (awsQuery, see
// sts.go) and ECR DescribeImages (awsJson1_1, see ecr.go) for the
// unmodified sts and ecr clients.
//
// The simulator implements the subset of ECS the product uses: clusters,
// task definitions (stored verbatim, so every field a client registers is
// echoed back) and services with deployments. Deployments progress without
// goroutines: an IN_PROGRESS deployment is observed as COMPLETED by the first
// request made once the rollout duration has passed on the simulator's clock
// (or by AdvanceRollouts). Every rolloutState change can be reported as an
// EventBridge "ECS Deployment State Change" event (WithEventSink).
//
// State is kept per AWS account: requests act in the account of their
// credentials (roles assumed through the simulator's STS land in the role's
// account), and the Go API reaches any account through Account.
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
	"net/url"
	"strings"
	"sync"
	"time"
)

// TargetPrefix is the X-Amz-Target prefix of every ECS operation.
const TargetPrefix = "AmazonEC2ContainerServiceV20141113."

const (
	defaultAccount = "123456789012"
	defaultRegion  = "us-east-1"
	maxBodyBytes   = 10 << 20
	jsonContent    = "application/x-amz-json-1.1"
	formContent    = "application/x-www-form-urlencoded"
)

// Server is an ECS API simulator. It implements http.Handler; use Start to
// serve it on a loopback port. All methods are safe for concurrent use.
//
// # Accounts and credentials
//
// The simulator holds any number of AWS accounts, each with its own
// clusters, services, task definitions, ECR repositories, call counters and
// throttling buckets (see AccountView). A request acts in the account of its
// credentials, read from the access key id in its SigV4 Authorization
// header (signatures are not verified):
//
//   - temporary credentials issued by the simulator's STS AssumeRole act in
//     the assumed role's account; once expired (on the simulator's clock)
//     they are rejected with ExpiredTokenException, and a wrong
//     X-Amz-Security-Token with UnrecognizedClientException;
//   - temporary access keys (ASIA…) the simulator did not issue are rejected
//     with UnrecognizedClientException;
//   - anonymous requests and any other access key act in the default account
//     (WithAccount).
//
// The Server's seeding and observation methods act on the default account;
// Account returns the same methods for any account.
type Server struct {
	account         string // id of the default account
	region          string
	clock           func() time.Time
	rolloutDuration time.Duration
	stageDuration   time.Duration // per lifecycle stage of non-rolling deployments
	minute          time.Duration // one minute of deployment configuration
	rollbackFor     time.Duration // see WithRollbackDuration
	buckets         map[Category]Bucket
	oldServiceARNs  bool
	roles           map[string]*role // by role ARN; fixed after New
	roleErr         error
	sink            func(event []byte)
	observer        func(Call)

	admin *http.ServeMux

	mu         sync.Mutex
	accounts   map[string]*account
	def        *account
	keys       map[string]*issuedKey // temporary access key id -> credentials
	faults     map[string]*faultState
	latency    map[string]time.Duration
	events     [][]byte // queued deployment events, delivered after mu is released
	delivering bool
	listLag    time.Duration // see SetServiceDeploymentListLag

	httpMu  sync.Mutex
	httpSrv *http.Server
}

// Option configures a Server.
type Option func(*Server)

// WithAccount sets the default account: the one anonymous requests act in
// and the Server's own methods observe (default "123456789012").
func WithAccount(account string) Option { return func(s *Server) { s.account = account } }

// WithRegion sets the region used in ARNs (default "us-east-1").
func WithRegion(region string) Option { return func(s *Server) { s.region = region } }

// WithClock replaces the wall clock. The clock drives timestamps, rollout
// progression, credential expiry and the throttling token buckets, so a
// fake clock makes all of them deterministic.
func WithClock(now func() time.Time) Option { return func(s *Server) { s.clock = now } }

// WithRolloutDuration sets how long a new deployment stays IN_PROGRESS on the
// simulator's clock before requests observe it as COMPLETED. The default, 0,
// means the response that creates the deployment shows IN_PROGRESS and any
// later request shows COMPLETED.
func WithRolloutDuration(d time.Duration) Option {
	return func(s *Server) { s.rolloutDuration = d }
}

// WithThrottling enables token-bucket throttling with the given buckets,
// one set per account. Operations outside the given categories are not
// throttled. A throttled call fails with 400 ThrottlingException "Rate
// exceeded".
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

// New returns a Server with no clusters, task definitions or services. It
// panics if a WithRole option has an invalid role ARN.
func New(opts ...Option) *Server {
	s := &Server{
		account:  defaultAccount,
		region:   defaultRegion,
		clock:    time.Now,
		roles:    map[string]*role{},
		accounts: map[string]*account{},
		keys:     map[string]*issuedKey{},
		faults:   map[string]*faultState{},
		latency:  map[string]time.Duration{},
	}
	for _, o := range opts {
		o(s)
	}
	if s.roleErr != nil {
		panic(s.roleErr)
	}
	s.def = s.accountLocked(s.account)
	for _, r := range s.roles {
		s.accountLocked(r.account)
	}
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

// protocol is the wire protocol of a request.
type protocol int

const (
	protoECS   protocol = iota // awsJson1_1, X-Amz-Target AmazonEC2ContainerServiceV20141113.*
	protoECR                   // awsJson1_1, X-Amz-Target AmazonEC2ContainerRegistry_V20150921.*
	protoQuery                 // awsQuery (STS): form-encoded Action=...
)

// ServeHTTP serves the ECS, ECR and STS wire protocols on every path except
// /_sim/, which is the admin surface.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/_sim/") {
		s.admin.ServeHTTP(w, r)
		return
	}
	reqID := newRequestID()
	w.Header().Set("X-Amzn-Requestid", reqID)

	target := r.Header.Get("X-Amz-Target")
	proto, op := protoECS, ""
	switch {
	case strings.HasPrefix(target, TargetPrefix):
		op = strings.TrimPrefix(target, TargetPrefix)
	case strings.HasPrefix(target, ECRTargetPrefix):
		proto, op = protoECR, strings.TrimPrefix(target, ECRTargetPrefix)
	case target == "" && strings.HasPrefix(r.Header.Get("Content-Type"), formContent):
		proto = protoQuery
	}
	var errCode string
	fail := func(err error) {
		errCode = asAPIError(err).Code
		if proto == protoQuery {
			writeQueryError(w, err, reqID)
		} else {
			writeError(w, err)
		}
	}

	body, readErr := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
	if readErr == nil && len(body) > maxBodyBytes {
		readErr = errors.New("request body too large")
	}
	var form url.Values
	if proto == protoQuery && readErr == nil {
		if form, readErr = url.ParseQuery(string(body)); readErr == nil {
			op = form.Get("Action")
		}
	}

	a, c, authErr, delay := s.admit(r, op)
	if s.observer != nil {
		// The answer is held back until the observer returned, whatever its size, so that
		// what the observer does happens before the caller learns the call's outcome.
		held := &heldResponse{ResponseWriter: w}
		w = held
		call := Call{Time: s.clock(), Account: a.id, Operation: op, Body: body}
		defer func() {
			call.ErrorCode = errCode
			s.observer(call)
			held.release()
		}()
	}

	if r.Method != http.MethodPost {
		fail(&apiError{Status: http.StatusMethodNotAllowed, Code: "UnknownOperationException",
			Message: "Method " + r.Method + " is not allowed; the API accepts POST only."})
		return
	}
	if readErr != nil {
		fail(errSerialization("could not read request body: " + readErr.Error()))
		return
	}
	if authErr != nil {
		fail(authErr.forProtocol(proto))
		return
	}

	var h func() (any, error)
	switch proto {
	case protoECS, protoECR:
		table := operations
		if proto == protoECR {
			table = ecrOperations
		}
		oh, ok := table[op]
		if !ok {
			fail(&apiError{Status: http.StatusBadRequest, Code: "UnknownOperationException",
				Message: fmt.Sprintf("Unknown operation %q.", target)})
			return
		}
		if len(bytes.TrimSpace(body)) == 0 {
			body = []byte("{}")
		}
		h = func() (any, error) { return oh(a, body) }
	case protoQuery:
		qh, ok := stsOperations[op]
		if !ok {
			fail(&apiError{Status: http.StatusBadRequest, Code: "InvalidAction",
				Message: fmt.Sprintf("Could not find operation %s for version %s", op, form.Get("Version"))})
			return
		}
		h = func() (any, error) { return qh(a, &stsRequest{caller: c, form: form, requestID: reqID}) }
	}
	if delay > 0 {
		if err := sleepCtx(r.Context(), delay); err != nil {
			return // client went away
		}
	}

	out, err := s.invoke(a, op, h)
	if err != nil {
		fail(err)
		return
	}
	if proto == protoQuery {
		writeXML(w, http.StatusOK, out)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// admit resolves the account a request acts in, counts the call there and
// returns the call's injected latency. authErr is set if the request's
// credentials must be rejected (the call is still counted).
func (s *Server) admit(r *http.Request, op string) (a *account, c *caller, authErr *authError, delay time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, c, authErr = s.callerLocked(r, s.clock())
	a.total++
	if op != "" {
		a.calls[op]++
	}
	return a, c, authErr, s.latency[op]
}

// invoke runs one counted wire operation in account a under the lock: it
// advances rollouts, applies throttling and injected faults, then the
// handler. Deployment events it causes are delivered once the lock is
// released.
func (s *Server) invoke(a *account, op string, h func() (any, error)) (any, error) {
	s.lock()
	defer s.unlock()
	now := s.clock()
	s.advanceLocked(now)
	if a.throttleLocked(op, now) {
		a.throttled[op]++
		return nil, &apiError{Status: http.StatusBadRequest, Code: "ThrottlingException", Message: "Rate exceeded"}
	}
	after, fault := s.faultLocked(op)
	if fault == nil {
		return h()
	}
	if after {
		_, _ = h()
	}
	return nil, fault
}

// opHandler implements one ECS or ECR operation in an account. It runs with
// the server's lock held and returns the response document or an error (an
// *apiError for modelled errors).
type opHandler func(a *account, body []byte) (any, error)

// operations maps ECS operation names to their handlers.
var operations map[string]opHandler

func init() {
	operations = map[string]opHandler{
		"CreateCluster":            (*account).opCreateCluster,
		"DescribeClusters":         (*account).opDescribeClusters,
		"RegisterTaskDefinition":   (*account).opRegisterTaskDefinition,
		"DescribeTaskDefinition":   (*account).opDescribeTaskDefinition,
		"DeregisterTaskDefinition": (*account).opDeregisterTaskDefinition,
		"ListTaskDefinitions":      (*account).opListTaskDefinitions,
		"CreateService":            (*account).opCreateService,
		"DescribeServices":         (*account).opDescribeServices,
		"UpdateService":            (*account).opUpdateService,
		"ListServices":             (*account).opListServices,

		"ListServiceDeployments":     (*account).opListServiceDeployments,
		"DescribeServiceDeployments": (*account).opDescribeServiceDeployments,
		"DescribeServiceRevisions":   (*account).opDescribeServiceRevisions,
		"StopServiceDeployment":      (*account).opStopServiceDeployment,
		"ContinueServiceDeployment":  (*account).opContinueServiceDeployment,
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

// asAPIError returns err as an *apiError; other errors become a 500
// ServerException.
func asAPIError(err error) *apiError {
	var ae *apiError
	if !errors.As(err, &ae) {
		ae = &apiError{Status: http.StatusInternalServerError, Code: "ServerException", Message: err.Error()}
	}
	return ae
}

// writeError writes an awsJson error response.
func writeError(w http.ResponseWriter, err error) {
	ae := asAPIError(err)
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

// heldResponse buffers a response until release writes it.
type heldResponse struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (h *heldResponse) WriteHeader(status int) {
	if h.status == 0 {
		h.status = status
	}
}

func (h *heldResponse) Write(p []byte) (int, error) {
	if h.status == 0 {
		h.status = http.StatusOK
	}
	return h.body.Write(p)
}

func (h *heldResponse) release() {
	if h.status == 0 {
		return
	}
	h.ResponseWriter.WriteHeader(h.status)
	_, _ = h.ResponseWriter.Write(h.body.Bytes())
}
