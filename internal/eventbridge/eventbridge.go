// Package eventbridge holds what the receiver and the handlers of the events it routes share:
// the EventBridge envelope, the scope of a request, the answer, and the handler registry.
// It sits beneath both, so that neither imports the other.
package eventbridge

import (
	"context"
	"encoding/json"
	"time"
)

// Event is the envelope of an Amazon EventBridge event, as an API destination posts it.
type Event struct {
	Version    string
	ID         string
	DetailType string
	Source     string
	Account    string
	Region     string
	Time       time.Time
	Resources  []string
	// Detail is the event's detail object, raw; its format depends on Source and DetailType.
	Detail json.RawMessage
}

// Scope is the set of Environments a request may change: one namespace, or every namespace
// when Namespace is empty (the cluster-wide routes).
type Scope struct {
	Namespace string
}

// All reports whether the scope is every namespace.
func (s Scope) All() bool { return s.Namespace == "" }

// Tenant is the scope's name in metrics and rate limits: the namespace, or "*".
func (s Scope) Tenant() string {
	if s.All() {
		return "*"
	}
	return s.Namespace
}

// EventKind identifies the events one handler takes: the envelope's source and detail-type.
type EventKind struct {
	Source     string
	DetailType string
}

func (k EventKind) String() string { return k.Source + " / " + k.DetailType }

// EventHandler handles one kind of authenticated EventBridge event for the Environments in
// scope, and returns the HTTP status and the answer. The status decides whether EventBridge
// retries: it retries 401, 407, 409, 429 and 5xx (up to 24 hours) and gives every other 4xx
// up at once (to the target's dead-letter queue). So return 2xx for anything retrying cannot
// change (ignored, duplicate, stale, conflicting), 400 for an event that can never be
// processed, and 503 only for a transient failure such as a failed API server write.
type EventHandler interface {
	Handle(ctx context.Context, ev *Event, scope Scope) (int, Response)
}

// EventHandlerFunc adapts a function to EventHandler.
type EventHandlerFunc func(ctx context.Context, ev *Event, scope Scope) (int, Response)

// Handle calls f.
func (f EventHandlerFunc) Handle(ctx context.Context, ev *Event, scope Scope) (int, Response) {
	return f(ctx, ev, scope)
}

// EventRoute registers a handler for one kind of event. Label names the sender in the
// metrics (the source label of autodeploy_receiver_requests_total), such as "codebuild".
type EventRoute struct {
	Kind    EventKind
	Label   string
	Handler EventHandler
}

// Results in Response.Result.
const (
	ResultRecorded  = "recorded"
	ResultDuplicate = "duplicate"
	ResultStale     = "stale"
	ResultConflict  = "conflict"
	ResultNoMatch   = "no-match"
	ResultIgnored   = "ignored"
)

// Response is the JSON body of every answer.
type Response struct {
	// Result sums up what happened: recorded, duplicate, stale, conflict, no-match or ignored.
	Result      string `json:"result,omitempty"`
	Application string `json:"application,omitempty"`
	BuildID     string `json:"buildId,omitempty"`
	BuildNumber int64  `json:"buildNumber,omitempty"`
	// Updated lists the Environments (namespace/name) that recorded the build.
	Updated   []string `json:"updated"`
	Duplicate []string `json:"duplicate,omitempty"`
	Stale     []string `json:"stale,omitempty"`
	Conflicts []string `json:"conflicts,omitempty"`
	// Incomplete lists the Environments that recorded the build but do not deploy it, each
	// with the container it names no image for ("namespace/name: no image for container
	// worker").
	Incomplete []string `json:"incomplete,omitempty"`
	// Message explains a result that is no error, such as why an event was ignored.
	Message string `json:"message,omitempty"`
	Error   string `json:"error,omitempty"`
}

// ContainerImageVariablePrefix starts the name of a CodeBuild exported variable that names the
// image a build produced for one container.
const ContainerImageVariablePrefix = "AUTODEPLOY_IMAGE_"

// ContainerVariableKey is how a container's name appears in its image variable: upper-cased,
// every character other than a letter or digit written as _ ("log-router" is LOG_ROUTER).
func ContainerVariableKey(container string) string {
	b := []byte(container)
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z':
			b[i] = c - 'a' + 'A'
		case c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		default:
			b[i] = '_'
		}
	}
	return string(b)
}

// ContainerImageVariable is the CodeBuild exported variable that names the image of container:
// AUTODEPLOY_IMAGE_WORKER for container worker.
func ContainerImageVariable(container string) string {
	return ContainerImageVariablePrefix + ContainerVariableKey(container)
}
