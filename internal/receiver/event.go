package receiver

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/autodeploy-dev/autodeploy/internal/eventbridge"
	"github.com/autodeploy-dev/autodeploy/internal/manifest"
)

// The receiver's shared types live in package eventbridge, beneath the receiver and the
// handlers it routes to.
type (
	Event            = eventbridge.Event
	Scope            = eventbridge.Scope
	EventKind        = eventbridge.EventKind
	EventHandler     = eventbridge.EventHandler
	EventHandlerFunc = eventbridge.EventHandlerFunc
	EventRoute       = eventbridge.EventRoute
	Response         = eventbridge.Response
)

// Results in Response.Result.
const (
	ResultRecorded  = eventbridge.ResultRecorded
	ResultDuplicate = eventbridge.ResultDuplicate
	ResultStale     = eventbridge.ResultStale
	ResultConflict  = eventbridge.ResultConflict
	ResultNoMatch   = eventbridge.ResultNoMatch
	ResultIgnored   = eventbridge.ResultIgnored
)

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
