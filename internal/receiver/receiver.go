// Package receiver is the HTTP endpoint build systems post builds to: signed build manifests
// and Amazon EventBridge events (CodeBuild, ECR). It authenticates each request with the
// cluster-wide key or the key of the namespace in its path, records the build as
// status.latestBuild of every matching Environment in scope and answers only after the API
// server accepted the write, so a failed write makes the sender retry.
package receiver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/manifest"
	"github.com/autodeploy-dev/autodeploy/internal/metrics"
)

// ApplicationIndex is the field index on spec.application used to find the Environments a
// manifest updates.
const ApplicationIndex = "spec.application"

// MaxBodyBytes caps a request body.
const MaxBodyBytes = 1 << 20

// Routes. The cluster-wide routes update matching Environments in every namespace and are
// authenticated with the manager's key files; the namespaced ones update only that namespace
// and are authenticated with the keys in its TenantSecretName Secret.
const (
	ManifestPath           = "/v1/manifests"
	NamespacedManifestPath = "/v1/namespaces/{namespace}/manifests"
	EventsPath             = "/v1/events"
	NamespacedEventsPath   = "/v1/namespaces/{namespace}/events"
)

// Event reasons emitted on Environments.
const (
	// EventBuildReceived: a build was recorded on an Environment that does not deploy it
	// (pinned, or auto-deploy off). A build an Environment deploys has no Event of its own
	// from the receiver: the reconciler's Deployed Event names it, and a gate that holds it
	// has its own Event.
	EventBuildReceived = "BuildReceived"
	// EventBuildConflict: another build already has this build number; the build is ignored.
	EventBuildConflict = "BuildConflict"
)

// Time windows of the duplicate memories (per replica; the build id makes a duplicate a
// no-op across replicas anyway).
const (
	// seenEventTTL covers EventBridge's redeliveries of an event it already delivered.
	seenEventTTL = time.Hour
	maxSeen      = 100000
)

// IndexApplication registers ApplicationIndex with the manager's field indexer.
func IndexApplication(ctx context.Context, indexer client.FieldIndexer) error {
	return indexer.IndexField(ctx, &deployv1.Environment{}, ApplicationIndex, func(o client.Object) []string {
		return []string{o.(*deployv1.Environment).Spec.Application}
	})
}

// Handler serves every receiver route (NewMux).
type Handler struct {
	// Cache lists Environments by ApplicationIndex.
	Cache client.Reader
	// Live reads an Environment from the API server after a write from the cached object
	// conflicted, and to confirm a build needs no write.
	Live client.Reader
	// Writer writes the status.
	Writer client.StatusClient
	// Keys returns the cluster-wide manifest signing keys; nil or none: ManifestPath
	// answers 401 to every request.
	Keys func() [][]byte
	// EventKeys returns the cluster-wide EventBridge API keys; nil or none: EventsPath
	// answers 401 to every request.
	EventKeys func() [][]byte
	// Tenants returns a namespace's keys for the namespaced routes; nil: they answer 401.
	Tenants TenantKeySource
	// Limiter limits authenticated requests per tenant; nil: no limit.
	Limiter *TenantLimiter
	// ImageVariable is the CodeBuild exported variable holding the image
	// (DefaultImageVariable when empty).
	ImageVariable string
	// EventRoutes add (or replace) event handlers beside the CodeBuild and ECR ones.
	EventRoutes []EventRoute
	// Recorder emits BuildReceived and BuildConflict Events on Environments.
	Recorder events.EventRecorder
	Log      logr.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time

	once       sync.Once
	routes     map[EventKind]EventRoute
	signatures *seenSet
	eventIDs   *seenSet
	written    *ownWrites
}

// NewMux returns the receiver's routes served by h.
func NewMux(h *Handler) http.Handler {
	h.init()
	return h
}

func (h *Handler) init() {
	h.once.Do(func() {
		h.signatures = newSeenSet(manifest.MaxClockSkew*2, maxSeen)
		h.eventIDs = newSeenSet(seenEventTTL, maxSeen)
		h.written = newOwnWrites()
		h.routes = map[EventKind]EventRoute{
			CodeBuildStateChange: {Kind: CodeBuildStateChange, Label: "codebuild", Handler: EventHandlerFunc(h.handleCodeBuild)},
			ECRImageAction:       {Kind: ECRImageAction, Label: "ecr", Handler: EventHandlerFunc(h.handleECR)},
		}
		for _, r := range h.EventRoutes {
			h.routes[r.Kind] = r
		}
	})
}

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

// ServeHTTP serves every route. Paths are matched as sent, never cleaned or redirected: a
// path under /v1/namespaces/ that is not <namespace>/manifests or <namespace>/events with a
// valid namespace (an escaped slash, a dot segment, an empty or extra segment) is answered
// like a namespace without keys; any other unknown path gets 404.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.init()
	path := r.URL.EscapedPath()
	switch {
	case path == ManifestPath:
		h.serve(w, r, route{})
	case path == EventsPath:
		h.serve(w, r, route{event: true})
	case strings.HasPrefix(path, namespacesPrefix):
		h.serve(w, r, namespacedRoute(strings.TrimPrefix(path, namespacesPrefix)))
	default:
		a := &answer{code: http.StatusNotFound, source: "unknown", tenant: "-"}
		if !headersTooLarge(w, r, a) {
			a.resp = Response{Error: "not found: POST to " + ManifestPath + ", " + EventsPath + " or their /v1/namespaces/<namespace>/ forms"}
		}
		metrics.ReceiverRequests.WithLabelValues(a.source, strconv.Itoa(a.code), a.tenant).Inc()
		write(w, a)
	}
}

const namespacesPrefix = "/v1/namespaces/"

// route is what a request path asks for.
type route struct {
	event bool
	// namespace is empty for the cluster-wide routes.
	namespace string
	// unknown: a path under /v1/namespaces/ naming no valid namespace and route; no key
	// authenticates it.
	unknown bool
}

// namespacedRoute parses the escaped path after /v1/namespaces/.
func namespacedRoute(rest string) route {
	parts := strings.Split(rest, "/")
	if len(parts) != 2 || (parts[1] != "manifests" && parts[1] != "events") ||
		len(validation.IsDNS1123Label(parts[0])) > 0 {
		return route{unknown: true, event: len(parts) == 2 && parts[1] == "events"}
	}
	return route{event: parts[1] == "events", namespace: parts[0]}
}

// answer is one reply with what the metrics need.
type answer struct {
	code       int
	resp       Response
	source     string
	tenant     string
	retryAfter int
}

func write(w http.ResponseWriter, a *answer) {
	switch a.code {
	case http.StatusMethodNotAllowed:
		w.Header().Set("Allow", http.MethodPost)
	case http.StatusServiceUnavailable, http.StatusTooManyRequests:
		if a.retryAfter == 0 {
			a.retryAfter = 5
		}
	}
	if a.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(a.retryAfter))
	}
	if a.resp.Updated == nil {
		a.resp.Updated = []string{}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(a.code)
	_ = json.NewEncoder(w).Encode(a.resp)
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request, rt route) {
	a := &answer{source: "manifest", tenant: "-"}
	if rt.event {
		a.source = "unknown"
	}
	if !headersTooLarge(w, r, a) {
		h.handle(w, r, rt, a)
	}
	metrics.ReceiverRequests.WithLabelValues(a.source, strconv.Itoa(a.code), a.tenant).Inc()
	write(w, a)
}

func fail(a *answer, code int, format string, args ...any) {
	a.code = code
	a.resp = Response{Error: fmt.Sprintf(format, args...)}
}

// handle fills a. The checks run from the cheapest and least revealing to the most: method,
// content type and size say nothing about tenants; authentication fails alike whether the
// namespace, its Secret or the key is wrong; only an authenticated tenant is rate limited,
// and only an authenticated body is parsed.
func (h *Handler) handle(w http.ResponseWriter, r *http.Request, rt route, a *answer) {
	isEvent, namespace := rt.event, rt.namespace
	if r.Method != http.MethodPost {
		fail(a, http.StatusMethodNotAllowed, "method %s not allowed: POST a manifest or event", r.Method)
		return
	}
	if err := checkContentType(r.Header.Get("Content-Type")); err != nil {
		fail(a, http.StatusUnsupportedMediaType, "%v", err)
		return
	}
	if r.ContentLength > MaxBodyBytes {
		fail(a, http.StatusRequestEntityTooLarge, "body larger than %d bytes", MaxBodyBytes)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			fail(a, http.StatusRequestEntityTooLarge, "body larger than %d bytes", MaxBodyBytes)
			return
		}
		// The error names the sockets: it goes to the log only.
		h.Log.Info("Rejected request: reading the body failed", "path", r.URL.Path, "remote", remoteHost(r), "error", err.Error())
		fail(a, http.StatusBadRequest, "the body did not arrive in full (Content-Length %d) within the request time limit", r.ContentLength)
		return
	}

	scope := Scope{Namespace: namespace}
	var keys [][]byte
	var code int
	if !rt.unknown {
		keys, code, err = h.keysFor(r.Context(), scope, isEvent)
	}
	if err != nil {
		a.code, a.resp = code, Response{Error: err.Error()}
		if code == http.StatusTooManyRequests {
			a.retryAfter = 1
		}
		return
	}
	now := h.now()
	var authErr error
	switch {
	case isEvent && (repeated(r.Header, APIKeyHeader) || repeated(r.Header, "Authorization")):
		authErr = ErrRepeatedAPIKey
	case isEvent:
		var given []byte
		given, authErr = ParseAPIKey(r.Header.Get(APIKeyHeader), r.Header.Get("Authorization"))
		if authErr == nil && !MatchAPIKey(keys, given) {
			authErr = ErrAPIKeyMismatch
		}
	case repeated(r.Header, manifest.TimestampHeader) || repeated(r.Header, manifest.SignatureHeader):
		authErr = ErrRepeatedSignature
	default:
		authErr = manifest.Verify(padKeys(keys), r.Header.Get(manifest.TimestampHeader), r.Header.Get(manifest.SignatureHeader), body, now)
	}
	if authErr != nil {
		// The same answer whether the namespace, its Secret or the key is wrong; the log has
		// the namespace for the operator, never a key.
		metrics.ReceiverAuthFailures.WithLabelValues(authReason(authErr)).Inc()
		h.Log.Info("Rejected request: authentication failed", "path", r.URL.Path, "remote", remoteHost(r), "reason", authErr.Error())
		fail(a, http.StatusUnauthorized, "%s", AuthFailedMessage)
		return
	}
	a.tenant = scope.Tenant()
	if ok, wait := h.Limiter.Reserve(a.tenant, now); !ok {
		fail(a, http.StatusTooManyRequests, "rate limit of tenant %s exceeded; retry later", a.tenant)
		a.retryAfter = retryAfterSeconds(wait)
		return
	}
	if isEvent {
		h.handleEvent(r.Context(), body, scope, a)
		return
	}
	h.handleManifest(r.Context(), r.Header.Get(manifest.SignatureHeader), body, scope, now, a)
}

// keysFor returns the keys valid for scope. An error carries the status to answer.
func (h *Handler) keysFor(ctx context.Context, scope Scope, isEvent bool) ([][]byte, int, error) {
	if scope.All() {
		f := h.Keys
		if isEvent {
			f = h.EventKeys
		}
		if f == nil {
			return nil, 0, nil
		}
		return f(), 0, nil
	}
	if h.Tenants == nil || len(validation.IsDNS1123Label(scope.Namespace)) > 0 {
		return nil, 0, nil
	}
	tk, err := h.Tenants.TenantKeys(ctx, scope.Namespace)
	switch {
	case errors.Is(err, ErrLookupLimited):
		return nil, http.StatusTooManyRequests, errors.New("too many requests; retry later")
	case err != nil:
		h.Log.Error(err, "Reading tenant keys failed", "namespace", scope.Namespace)
		return nil, http.StatusServiceUnavailable, errors.New("reading keys failed; retry")
	}
	if isEvent {
		return tk.EventBridge, 0, nil
	}
	return tk.Manifest, 0, nil
}

func authReason(err error) string {
	switch {
	case errors.Is(err, manifest.ErrMissingSignature), errors.Is(err, ErrMissingAPIKey):
		return "missing"
	case errors.Is(err, manifest.ErrMalformed), errors.Is(err, ErrMalformedAPIKey),
		errors.Is(err, ErrRepeatedSignature), errors.Is(err, ErrRepeatedAPIKey):
		return "malformed"
	case errors.Is(err, manifest.ErrStale):
		return "stale"
	default:
		return "mismatch"
	}
}

// checkContentType accepts application/json, with at most a UTF-8 charset.
func checkContentType(v string) error {
	const want = "Content-Type must be application/json"
	if v == "" {
		return errors.New(want)
	}
	mt, params, err := mime.ParseMediaType(v)
	if err != nil || mt != "application/json" {
		return errors.New(want)
	}
	for k, p := range params {
		if k != "charset" || !strings.EqualFold(p, "utf-8") {
			return errors.New(want + " (the only parameter allowed is charset=utf-8)")
		}
	}
	return nil
}

func (h *Handler) handleManifest(ctx context.Context, signature string, body []byte, scope Scope, now time.Time, a *answer) {
	// A signature is unique to its body and second, and is only accepted within
	// MaxClockSkew of its timestamp: remembering each accepted signature for twice that
	// (the whole window) makes a captured request worthless.
	replayKey := scope.Tenant() + "\x00" + strings.ToLower(signature)
	m, err := manifest.Parse(body)
	if err != nil {
		fail(a, http.StatusBadRequest, "invalid manifest: %v", err)
		return
	}
	if h.signatures.Seen(replayKey, now) {
		metrics.ReceiverDuplicates.WithLabelValues("signature").Inc()
		a.code, a.resp = h.replayed(ctx, m, scope)
		return
	}
	a.code, a.resp = h.apply(ctx, m, deployv1.SourceManifest, scope, http.StatusConflict)
	if a.code/100 == 2 {
		// Only a success is remembered: a failure is answered alike when it comes again.
		h.signatures.Add(replayKey, now)
	}
}

// replayed answers a signed request already accepted: nothing is written, and the answer
// lists the Environments in scope that follow the build as duplicates, as the first answer's
// resend would.
func (h *Handler) replayed(ctx context.Context, m *manifest.Manifest, scope Scope) (int, Response) {
	resp := Response{Result: ResultDuplicate, Application: m.Application, BuildID: m.BuildID, BuildNumber: m.BuildNumber,
		Message: "this signed request was already received; nothing changed"}
	list, err := h.matching(ctx, m, scope)
	if err == nil {
		for _, env := range list {
			resp.Duplicate = append(resp.Duplicate, env.Namespace+"/"+env.Name)
		}
	}
	return http.StatusOK, resp
}

func (h *Handler) handleEvent(ctx context.Context, body []byte, scope Scope, a *answer) {
	ev, err := ParseEvent(body)
	if err != nil {
		fail(a, http.StatusBadRequest, "invalid event: %v", err)
		return
	}
	route, ok := h.routes[EventKind{Source: ev.Source, DetailType: ev.DetailType}]
	if !ok {
		// An authenticated, well-formed event of a kind no handler takes: a rule that matches
		// more than it needs to. 200, so that it neither retries nor fills the dead-letter
		// queue; the metrics count it under source "unknown".
		a.code = http.StatusOK
		a.resp = Response{Result: ResultIgnored, Message: fmt.Sprintf("no handler for source %q detail-type %q", truncate(ev.Source), truncate(ev.DetailType))}
		return
	}
	a.source = route.Label
	idKey := scope.Tenant() + "\x00" + ev.Source + "\x00" + ev.ID
	now := h.now()
	if h.eventIDs.Seen(idKey, now) {
		metrics.ReceiverDuplicates.WithLabelValues("event").Inc()
		a.code = http.StatusOK
		a.resp = Response{Result: ResultDuplicate, Message: "event " + truncate(ev.ID) + " was already received; nothing changed"}
		return
	}
	a.code, a.resp = route.Handler.Handle(ctx, ev, scope)
	if a.code/100 == 2 {
		h.eventIDs.Add(idKey, now)
	}
}

func (h *Handler) handleCodeBuild(ctx context.Context, ev *Event, scope Scope) (int, Response) {
	m, err := ManifestFromCodeBuild(ev, h.ImageVariable)
	return h.recordEvent(ctx, m, deployv1.SourceCodeBuild, err, scope)
}

func (h *Handler) handleECR(ctx context.Context, ev *Event, scope Scope) (int, Response) {
	m, err := ManifestFromECR(ev)
	return h.recordEvent(ctx, m, deployv1.SourceECR, err, scope)
}

func (h *Handler) recordEvent(ctx context.Context, m *manifest.Manifest, source string, err error, scope Scope) (int, Response) {
	switch {
	case errors.Is(err, errIgnored):
		return http.StatusOK, Response{Result: ResultIgnored, Message: err.Error()}
	case err != nil:
		return http.StatusBadRequest, Response{Error: "invalid event: " + err.Error()}
	}
	// A conflicting build number is answered 200: EventBridge would retry a 409 for a day
	// and retrying cannot change it. The BuildConflict Event tells the Environment's owner.
	return h.RecordBuild(ctx, m, source, scope)
}

// RecordBuild records a validated build from source (deployv1.SourceCodeBuild, ...) on the
// matching Environments in scope, for event handlers: a conflicting build number is answered
// 200 (listed in conflicts, with a BuildConflict Event), a failed API server write 503.
func (h *Handler) RecordBuild(ctx context.Context, m *manifest.Manifest, source string, scope Scope) (int, Response) {
	return h.apply(ctx, m, source, scope, http.StatusOK)
}

// matching lists the Environments in scope that follow m's application and branch.
func (h *Handler) matching(ctx context.Context, m *manifest.Manifest, scope Scope) ([]deployv1.Environment, error) {
	list := &deployv1.EnvironmentList{}
	opts := []client.ListOption{client.MatchingFields{ApplicationIndex: m.Application}}
	if !scope.All() {
		opts = append(opts, client.InNamespace(scope.Namespace))
	}
	if err := h.Cache.List(ctx, list, opts...); err != nil {
		return nil, err
	}
	out := list.Items[:0]
	for _, env := range list.Items {
		if env.Spec.Branch != "" && env.Spec.Branch != m.Branch {
			continue
		}
		if !scope.All() && env.Namespace != scope.Namespace {
			continue // never trust a reader to have applied the namespace
		}
		out = append(out, env)
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Namespace+"/"+out[i].Name < out[j].Namespace+"/"+out[j].Name
	})
	return out, nil
}

// recordConcurrency bounds the parallel status writes of one build.
const recordConcurrency = 8

func (h *Handler) apply(ctx context.Context, m *manifest.Manifest, source string, scope Scope, conflictCode int) (int, Response) {
	resp := Response{Application: m.Application, BuildID: m.BuildID, BuildNumber: m.BuildNumber, Updated: []string{}}
	envs, err := h.matching(ctx, m, scope)
	if err != nil {
		h.Log.Error(err, "Listing Environments for a build failed", "application", m.Application)
		resp.Error = "listing Environments failed; retry"
		return http.StatusServiceUnavailable, resp
	}
	now := h.now()
	// The writes go out a few at a time: a build fanned out to a thousand Environments is
	// recorded well within a sender's timeout (EventBridge waits 5 s).
	type recorded struct {
		outcome Outcome
		current *deployv1.Build
		err     error
	}
	results := make([]recorded, len(envs))
	var wg sync.WaitGroup
	sem := make(chan struct{}, recordConcurrency)
	for i := range envs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			key := types.NamespacedName{Namespace: envs[i].Namespace, Name: envs[i].Name}
			r := &results[i]
			var written *deployv1.Environment
			r.outcome, r.current, written, r.err = record(ctx, h.Live, h.Writer, key, h.written.newest(key, &envs[i]), m, source, now)
			if written != nil {
				h.written.remember(key, written, now)
			}
		}()
	}
	wg.Wait()
	var failed error
	for i := range envs {
		env := &envs[i]
		key := types.NamespacedName{Namespace: env.Namespace, Name: env.Name}
		outcome, current, err := results[i].outcome, results[i].current, results[i].err
		if err != nil {
			h.Log.Error(err, "Recording build on Environment failed", "environment", key, "buildID", m.BuildID)
			failed = errors.Join(failed, err)
			continue
		}
		metrics.Builds.WithLabelValues(string(outcome)).Inc()
		name := key.String()
		switch outcome {
		case Recorded:
			resp.Updated = append(resp.Updated, name)
			if c := missingContainer(&env.Spec, buildFrom(m, source, now, &env.Spec)); c != "" {
				resp.Incomplete = append(resp.Incomplete, fmt.Sprintf("%s: no image for container %s", name, c))
			}
			h.Log.Info("Recorded build on Environment", "environment", key, "buildID", m.BuildID, "buildNumber", m.BuildNumber, "image", m.Image, "tenant", scope.Tenant())
			if why := notDeployedBy(&env.Spec); why != "" && h.Recorder != nil {
				h.Recorder.Eventf(env, nil, "Normal", EventBuildReceived, "RecordBuild",
					"Build %d (%s) of %s recorded, not deployed: %s", m.BuildNumber, m.BuildID, m.Application, why)
			}
		case Duplicate:
			resp.Duplicate = append(resp.Duplicate, name)
		case Stale:
			resp.Stale = append(resp.Stale, name)
		case Conflict:
			resp.Conflicts = append(resp.Conflicts, name)
			h.Log.Info("Ignored a build: another build has its number", "environment", key, "buildID", m.BuildID, "buildNumber", m.BuildNumber)
			if h.Recorder != nil && current != nil {
				h.Recorder.Eventf(env, nil, "Warning", EventBuildConflict, "RecordBuild",
					"Build %s of %s has number %d, like the recorded build %s; it is ignored. Builds of one application must come from one sender with increasing numbers",
					m.BuildID, m.Application, m.BuildNumber, current.ID)
			}
		}
	}
	switch {
	case failed != nil:
		resp.Error = "writing to the API server failed; retry"
		return http.StatusServiceUnavailable, resp
	case len(resp.Conflicts) > 0:
		resp.Result = ResultConflict
		if conflictCode >= 400 {
			resp.Error = fmt.Sprintf("another build already has number %d", m.BuildNumber)
		} else {
			resp.Message = fmt.Sprintf("another build already has number %d; ignored", m.BuildNumber)
		}
		return conflictCode, resp
	case len(resp.Updated) > 0:
		resp.Result = ResultRecorded
		if len(resp.Incomplete) > 0 {
			resp.Message = "recorded; the Environments listed in incomplete manage a container the build names no image for, and do not deploy it"
		}
		return http.StatusAccepted, resp
	case len(resp.Duplicate) > 0:
		resp.Result = ResultDuplicate
		metrics.ReceiverDuplicates.WithLabelValues("build").Inc()
	case len(resp.Stale) > 0:
		resp.Result = ResultStale
	default:
		resp.Result = ResultNoMatch
	}
	return http.StatusOK, resp
}

func remoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// notDeployedBy says why an Environment of spec records builds without deploying them
// (pinned, or auto-deploy off); empty when it deploys them.
func notDeployedBy(spec *deployv1.EnvironmentSpec) string {
	switch {
	case spec.Pinned():
		return "pinned to " + spec.PinText()
	case !spec.AutoDeploy:
		return "auto-deploy is off"
	}
	return ""
}
