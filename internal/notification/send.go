package notification

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/manifest"
)

// DefaultGitHubAPI is the GitHub API base URL when spec.provider.address is empty.
const DefaultGitHubAPI = "https://api.github.com"

// GitHubAPIVersion is the REST API version requested (X-GitHub-Api-Version).
const GitHubAPIVersion = "2022-11-28"

// maxReply bounds how much of an endpoint's answer is read.
const maxReply = 64 << 10

// Provider is a configured endpoint: the provider type with its credentials from the Secret.
type Provider struct {
	Type string
	// Address is the webhook or Slack URL, or the GitHub API base URL.
	Address string
	// Key signs webhook bodies (none: unsigned).
	Key []byte
	// Token authenticates to GitHub.
	Token string
	// Notification names the Notification ("namespace/name"), told in webhook payloads.
	Notification string
}

// Delivery is one outcome to tell.
type Delivery struct {
	Outcome Outcome
	// Repository is the GitHub repository ("owner/repo") of the Environment.
	Repository string
	// GitHubDeployment is the GitHub deployment already created for the outcome's build
	// (0: none yet).
	GitHubDeployment int64
}

// Result is what a delivery left to remember.
type Result struct {
	// GitHubDeployment is the GitHub deployment the status was posted to.
	GitHubDeployment int64
	// Skipped says why nothing was sent (the outcome cannot be told by this provider).
	Skipped string
}

// Error is a failed delivery.
type Error struct {
	// Status is the HTTP status code (0: no answer).
	Status int
	// RetryAfter is how long the endpoint asked to wait (HTTP Retry-After), 0 when it did not.
	RetryAfter time.Duration
	// Rejected is true when the endpoint refused this request for good (400, 422): retrying
	// the same request cannot succeed, so it is given up and later outcomes go on.
	Rejected bool
	Msg      string
}

func (e *Error) Error() string { return e.Msg }

// Sender tells outcomes over HTTP.
type Sender struct {
	HTTP *http.Client
	// Now is the clock webhook signatures are made with; time.Now when nil.
	Now func() time.Time
}

// NewHTTPClient returns a client for endpoints: it bounds each request by timeout and follows
// no redirect (a signature or token is sent only where the spec says).
func NewHTTPClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Send delivers d to p.
func (s *Sender) Send(ctx context.Context, p Provider, d Delivery) (Result, error) {
	switch p.Type {
	case deployv1.ProviderWebhook:
		return Result{}, s.webhook(ctx, p, d.Outcome)
	case deployv1.ProviderSlack:
		return Result{}, s.slack(ctx, p, d.Outcome)
	case deployv1.ProviderGitHub:
		return s.github(ctx, p, d)
	}
	return Result{}, &Error{Rejected: true, Msg: fmt.Sprintf("unknown provider %q", p.Type)}
}

// Payload is the JSON body of a webhook.
type Payload struct {
	// ID identifies the outcome: a receiver that sees it twice (delivery is at least once)
	// can drop the second.
	ID           string        `json:"id"`
	Outcome      string        `json:"outcome"`
	At           *time.Time    `json:"at,omitempty"`
	Namespace    string        `json:"namespace"`
	Environment  string        `json:"environment"`
	Application  string        `json:"application"`
	Deploy       string        `json:"deploy"`
	Build        *PayloadBuild `json:"build,omitempty"`
	Image        string        `json:"image,omitempty"`
	Previous     string        `json:"previousImage,omitempty"`
	Trigger      string        `json:"trigger,omitempty"`
	Result       string        `json:"result,omitempty"`
	Reason       string        `json:"reason,omitempty"`
	Message      string        `json:"message"`
	Notification string        `json:"notification"`
}

// PayloadBuild is the build of a webhook payload.
type PayloadBuild struct {
	ID     string `json:"id"`
	Number int64  `json:"number"`
	Commit string `json:"commit,omitempty"`
}

// NewPayload returns the webhook payload of o.
func NewPayload(notification string, o Outcome) Payload {
	p := Payload{
		ID: o.Namespace + "/" + o.Environment + "/" + o.Key, Outcome: o.Type, Namespace: o.Namespace,
		Environment: o.Environment, Application: o.Application, Deploy: o.Deploy, Image: o.Image,
		Previous: o.PreviousImage, Trigger: o.Trigger, Result: o.Result, Reason: o.Reason, Message: o.Message,
		Notification: notification,
	}
	if !o.At.IsZero() {
		at := o.At.UTC()
		p.At = &at
	}
	if o.Build != nil {
		p.Build = &PayloadBuild{ID: o.Build.ID, Number: o.Build.Number, Commit: o.Commit}
	}
	return p
}

func (s *Sender) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Sender) webhook(ctx context.Context, p Provider, o Outcome) error {
	body, err := json.Marshal(NewPayload(p.Notification, o))
	if err != nil {
		return err
	}
	h := http.Header{}
	if len(p.Key) > 0 {
		now := s.now()
		h.Set(manifest.TimestampHeader, strconv.FormatInt(now.Unix(), 10))
		h.Set(manifest.SignatureHeader, manifest.Sign(p.Key, now, body))
	}
	_, _, err = s.post(ctx, p.Address, h, body, "webhook")
	return err
}

// slackMessage is the body of a Slack incoming webhook: text (the notification's fallback)
// and Block Kit blocks.
type slackMessage struct {
	Text   string       `json:"text"`
	Blocks []slackBlock `json:"blocks,omitempty"`
}

type slackBlock struct {
	Type     string      `json:"type"`
	Text     *slackText  `json:"text,omitempty"`
	Elements []slackText `json:"elements,omitempty"`
}

type slackText struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

var slackEmoji = map[string]string{
	deployv1.OutcomeDeployStarted:    ":rocket:",
	deployv1.OutcomeRolloutCompleted: ":white_check_mark:",
	deployv1.OutcomeRolloutFailed:    ":x:",
	deployv1.OutcomeRolledBack:       ":leftwards_arrow_with_hook:",
	deployv1.OutcomeHeld:             ":double_vertical_bar:",
	deployv1.OutcomeAwaitingApproval: ":raised_hand:",
	deployv1.OutcomeStalled:          ":warning:",
}

// slackEscape escapes the three characters Slack's mrkdwn gives a meaning to.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// SlackMessage returns the Slack message of o.
func SlackMessage(o Outcome) ([]byte, error) {
	text := fmt.Sprintf("%s %s/%s: %s", slackEmoji[o.Type], o.Namespace, o.Environment, o.Message)
	var ctxt []string
	ctxt = append(ctxt, "*"+o.Type+"*", "application "+o.Application)
	if o.Build != nil && o.Build.Number != 0 {
		ctxt = append(ctxt, fmt.Sprintf("build %d", o.Build.Number))
	}
	if o.Commit != "" {
		ctxt = append(ctxt, "commit `"+o.Commit+"`")
	}
	if o.Image != "" {
		ctxt = append(ctxt, "image `"+o.Image+"`")
	}
	m := slackMessage{
		Text: slackEscape(text),
		Blocks: []slackBlock{
			{Type: "section", Text: &slackText{Type: "mrkdwn", Text: slackEscape(fmt.Sprintf("%s *%s/%s*: %s", slackEmoji[o.Type], o.Namespace, o.Environment, o.Message))}},
			{Type: "context", Elements: []slackText{{Type: "mrkdwn", Text: slackEscape(strings.Join(ctxt, " · "))}}},
		},
	}
	return json.Marshal(m)
}

func (s *Sender) slack(ctx context.Context, p Provider, o Outcome) error {
	body, err := SlackMessage(o)
	if err != nil {
		return err
	}
	_, reply, err := s.post(ctx, p.Address, nil, body, "Slack")
	if err != nil {
		return err
	}
	if reply != "ok" {
		// Slack answers a message it accepted with "ok".
		return &Error{Status: http.StatusOK, Msg: fmt.Sprintf("Slack answered %q instead of ok", truncate(reply, 200))}
	}
	return nil
}

var repoPattern = regexp.MustCompile(`^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$`)

// gitHubStates maps outcomes to deployment-status states.
var gitHubStates = map[string]string{
	deployv1.OutcomeDeployStarted:    "in_progress",
	deployv1.OutcomeRolloutCompleted: "success",
	deployv1.OutcomeRolloutFailed:    "failure",
	deployv1.OutcomeRolledBack:       "inactive",
	deployv1.OutcomeHeld:             "queued",
	deployv1.OutcomeAwaitingApproval: "pending",
	deployv1.OutcomeStalled:          "error",
}

// GitHubState is the deployment-status state an outcome type is told with.
func GitHubState(outcome string) string { return gitHubStates[outcome] }

func (s *Sender) github(ctx context.Context, p Provider, d Delivery) (Result, error) {
	o := d.Outcome
	if d.Repository == "" {
		return Result{Skipped: fmt.Sprintf("Environment %s has no %s annotation", o.Environment, deployv1.GitHubRepositoryAnnotation)}, nil
	}
	if !repoPattern.MatchString(d.Repository) {
		return Result{Skipped: fmt.Sprintf("the %s annotation of Environment %s is %q, not owner/repo", deployv1.GitHubRepositoryAnnotation, o.Environment, d.Repository)}, nil
	}
	base := strings.TrimRight(p.Address, "/")
	if base == "" {
		base = DefaultGitHubAPI
	}
	h := http.Header{}
	h.Set("Accept", "application/vnd.github+json")
	h.Set("Authorization", "Bearer "+p.Token)
	h.Set("X-GitHub-Api-Version", GitHubAPIVersion)
	repo := base + "/repos/" + d.Repository
	id := d.GitHubDeployment
	if id == 0 {
		if o.Commit == "" {
			return Result{Skipped: fmt.Sprintf("the build of %s on Environment %s has no known commit", o.Image, o.Environment)}, nil
		}
		body, err := json.Marshal(map[string]any{
			"ref": o.Commit, "environment": o.Environment, "auto_merge": false, "required_contexts": []string{},
			"description": truncate(o.Message, 140),
			"payload":     map[string]any{"application": o.Application, "image": o.Image, "namespace": o.Namespace, "build": buildNumber(o.Build)},
		})
		if err != nil {
			return Result{}, err
		}
		status, reply, err := s.post(ctx, repo+"/deployments", h, body, "GitHub")
		if err != nil {
			return Result{}, err
		}
		var created struct {
			ID int64 `json:"id"`
		}
		if status != http.StatusCreated || json.Unmarshal([]byte(reply), &created) != nil || created.ID == 0 {
			return Result{}, &Error{Status: status, Msg: fmt.Sprintf("GitHub answered %d to the deployment of %s without a deployment id: %s", status, o.Commit, truncate(reply, 200))}
		}
		id = created.ID
	}
	body, err := json.Marshal(map[string]any{
		"state": GitHubState(o.Type), "description": truncate(o.Message, 140), "environment": o.Environment,
	})
	if err != nil {
		return Result{}, err
	}
	if _, _, err := s.post(ctx, fmt.Sprintf("%s/deployments/%d/statuses", repo, id), h, body, "GitHub"); err != nil {
		return Result{GitHubDeployment: id}, err
	}
	return Result{GitHubDeployment: id}, nil
}

func buildNumber(b *deployv1.BuildRef) int64 {
	if b == nil {
		return 0
	}
	return b.Number
}

// post sends body as JSON and returns the status and the answer of a 2xx reply, or an *Error.
func (s *Sender) post(ctx context.Context, address string, h http.Header, body []byte, what string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, address, bytes.NewReader(body))
	if err != nil {
		return 0, "", &Error{Rejected: true, Msg: fmt.Sprintf("%s address: %v", what, redact(err))}
	}
	for k, v := range h {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "autodeploy-notification")
	resp, err := s.HTTP.Do(req)
	if err != nil {
		return 0, "", &Error{Msg: fmt.Sprintf("%s did not answer: %v", what, redact(err))}
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxReply))
	reply := strings.TrimSpace(string(raw))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp.StatusCode, reply, nil
	}
	e := &Error{Status: resp.StatusCode, Msg: fmt.Sprintf("%s answered %d: %s", what, resp.StatusCode, truncate(reply, 200))}
	switch resp.StatusCode {
	case http.StatusBadRequest, http.StatusUnprocessableEntity:
		e.Rejected = true
	case http.StatusTooManyRequests, http.StatusServiceUnavailable, http.StatusForbidden:
		// GitHub's secondary rate limits answer 403 with Retry-After.
		e.RetryAfter = retryAfter(resp.Header.Get("Retry-After"), s.now())
	}
	return resp.StatusCode, reply, e
}

// redact drops the URL from a transport error: a Slack webhook URL is a credential.
func redact(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// retryAfter parses a Retry-After value: seconds or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && secs > 0 {
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
