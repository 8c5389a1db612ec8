package receiver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/autodeploy-dev/autodeploy/internal/manifest"
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

// Limits on envelope fields.
const (
	maxEventField    = 256
	maxEventResource = 2048
)

// ParseEvent decodes and checks an EventBridge event envelope. id, source, detail-type, time
// and detail are required; fields it does not know are ignored, as AWS adds fields over time.
// A repeated key anywhere in the body, invalid UTF-8 or nesting deeper than 32 levels is an
// error.
func ParseEvent(body []byte) (*Event, error) {
	if err := checkJSON(body); err != nil {
		return nil, err
	}
	o, err := parseObject(body, "the event")
	if err != nil {
		return nil, err
	}
	ev := &Event{}
	for _, f := range []struct {
		key      string
		dst      *string
		required bool
	}{
		{"id", &ev.ID, true},
		{"source", &ev.Source, true},
		{"detail-type", &ev.DetailType, true},
		{"version", &ev.Version, false},
		{"account", &ev.Account, false},
		{"region", &ev.Region, false},
	} {
		s, ok, err := o.str(f.key)
		switch {
		case err != nil:
			return nil, fieldErr(f.key, err)
		case (!ok || s == "") && f.required:
			return nil, &manifest.FieldError{Field: f.key, Reason: "is required"}
		case len(s) > maxEventField:
			return nil, &manifest.FieldError{Field: f.key, Reason: fmt.Sprintf("is longer than %d characters", maxEventField)}
		case ok && !safeText(s):
			return nil, &manifest.FieldError{Field: f.key, Reason: "must contain only printable characters"}
		}
		*f.dst = s
	}
	ts, ok, err := o.str("time")
	if err != nil {
		return nil, fieldErr("time", err)
	}
	if !ok {
		return nil, &manifest.FieldError{Field: "time", Reason: "is required"}
	}
	if ev.Time, err = time.Parse(time.RFC3339, ts); err != nil {
		return nil, &manifest.FieldError{Field: "time", Reason: "must be an RFC 3339 time such as 2026-11-25T10:00:00Z"}
	}
	if raw, present := o["resources"]; present && string(raw) != "null" {
		if err := json.Unmarshal(raw, &ev.Resources); err != nil {
			return nil, &manifest.FieldError{Field: "resources", Reason: "must be an array of strings"}
		}
		for _, r := range ev.Resources {
			if len(r) > maxEventResource {
				return nil, &manifest.FieldError{Field: "resources", Reason: fmt.Sprintf("holds an entry longer than %d characters", maxEventResource)}
			}
		}
	}
	raw, present := o["detail"]
	if !present || len(raw) == 0 || raw[0] != '{' {
		return nil, &manifest.FieldError{Field: "detail", Reason: "is required and must be an object"}
	}
	ev.Detail = raw
	return ev, nil
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

// Event kinds handled out of the box.
var (
	CodeBuildStateChange = EventKind{Source: "aws.codebuild", DetailType: "CodeBuild Build State Change"}
	ECRImageAction       = EventKind{Source: "aws.ecr", DetailType: "ECR Image Action"}
)

// errIgnored marks an event that is valid but asks for nothing (a failed build, a deleted
// image); it is answered 200.
var errIgnored = errors.New("ignored")

type ignoredError struct{ reason string }

func (e *ignoredError) Error() string { return e.reason }
func (e *ignoredError) Is(target error) bool {
	return target == errIgnored
}

func ignored(format string, args ...any) error {
	return &ignoredError{reason: fmt.Sprintf(format, args...)}
}

// safeText reports whether s has no control characters, no invisible format characters
// (zero-width characters, bidirectional overrides, byte-order marks) and no replacement
// character. Spaces are allowed ("CodeBuild Build State Change").
func safeText(s string) bool {
	for _, r := range s {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == utf8.RuneError {
			return false
		}
	}
	return true
}
