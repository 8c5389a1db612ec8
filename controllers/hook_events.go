package controllers

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/eventbridge"
)

// ECSHookStateChange is the kind of EventBridge event ECS sends as a lifecycle hook of a
// service deployment changes state (a rule for "ECS Deployment State Change" does not match it).
var ECSHookStateChange = eventbridge.EventKind{Source: "aws.ecs", DetailType: "ECS Hook State Change"}

// HookEvents takes ECS "Hook State Change" events: HOOK_AWAITING_ACTION of a pause hook marks
// the rollout of the Environment whose service it is AwaitingApproval; any other state of the
// hook clears it. Events are matched by service ARN and service deployment (or, before the
// deployment is known, by time), so an event about another service or an older deployment
// changes nothing. An event that may concern a deploy still being recorded gets a 503, so that
// EventBridge delivers it again.
type HookEvents struct {
	// Cache lists Environments by ServiceIndex.
	Cache client.Reader
	Hooks HookSink
}

// Route returns the receiver route for these events.
func (h *HookEvents) Route() eventbridge.EventRoute {
	return eventbridge.EventRoute{Kind: ECSHookStateChange, Label: "ecs-hook", Handler: h}
}

type hookDetail struct {
	EventName            string          `json:"eventName"`
	ServiceArn           string          `json:"serviceArn"`
	ServiceDeploymentArn string          `json:"serviceDeploymentArn"`
	HookID               string          `json:"hookId"`
	TargetType           string          `json:"targetType"`
	Status               string          `json:"status"`
	LifecycleStage       string          `json:"lifecycleStage"`
	ExpiresAt            json.RawMessage `json:"expiresAt"`
	TimeoutAction        string          `json:"timeoutAction"`
}

// parseHookEvent reads the observation an ECS "Hook State Change" event carries and the ARN
// of its service; an error (naming what is wrong) for an event that can never be processed.
func parseHookEvent(ev *eventbridge.Event) (obs HookObservation, serviceARN, targetType string, err error) {
	var d hookDetail
	if uerr := json.Unmarshal(ev.Detail, &d); uerr != nil {
		return obs, "", "", fmt.Errorf("invalid event: detail: %v", uerr)
	}
	obs = HookObservation{
		ServiceDeploymentARN: d.ServiceDeploymentArn, HookID: d.HookID, Stage: d.LifecycleStage,
		TimeoutAction: d.TimeoutAction, At: ev.Time, Status: d.Status,
	}
	serviceARN = d.ServiceArn
	for _, r := range ev.Resources {
		switch {
		case obs.ServiceDeploymentARN == "" && strings.Contains(r, ":service-deployment/"):
			obs.ServiceDeploymentARN = r
		case serviceARN == "" && strings.Contains(r, ":service/"):
			serviceARN = r
		}
	}
	if serviceARN == "" {
		serviceARN = serviceOfDeployment(obs.ServiceDeploymentARN)
	}
	if name, ok := strings.CutPrefix(d.EventName, "HOOK_"); ok && name != "" {
		obs.Status = name
	}
	switch {
	case obs.HookID == "":
		return obs, "", "", fmt.Errorf("invalid event: detail.hookId is required")
	case obs.ServiceDeploymentARN == "":
		return obs, "", "", fmt.Errorf("invalid event: detail.serviceDeploymentArn (or a service-deployment ARN in resources) is required")
	case serviceARN == "":
		return obs, "", "", fmt.Errorf("invalid event: the service ARN (detail.serviceArn or resources) is required")
	case obs.Status == "":
		return obs, "", "", fmt.Errorf("invalid event: detail.eventName (HOOK_<status>) or detail.status is required")
	}
	if raw := bytes.TrimSpace(d.ExpiresAt); len(raw) > 0 && string(raw) != "null" {
		t, perr := parseTime(raw)
		if perr != nil {
			return obs, "", "", fmt.Errorf("invalid event: detail.expiresAt: %v", perr)
		}
		obs.ExpiresAt = &t
	}
	return obs, serviceARN, d.TargetType, nil
}

// parseTime reads a JSON time: an RFC 3339 string or epoch seconds.
func parseTime(raw []byte) (time.Time, error) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return time.Parse(time.RFC3339, s)
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s is no time", raw)
	}
	sec := int64(f)
	return time.Unix(sec, int64((f-float64(sec))*1e9)).UTC(), nil
}

// serviceOfDeployment returns the service ARN of a service deployment ARN
// (arn:aws:ecs:<region>:<account>:service-deployment/<cluster>/<service>/<id>), or "".
func serviceOfDeployment(arn string) string {
	prefix, rest, ok := strings.Cut(arn, ":service-deployment/")
	if !ok {
		return ""
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 {
		return ""
	}
	return prefix + ":service/" + parts[0] + "/" + parts[1]
}

// Handle implements eventbridge.EventHandler.
func (h *HookEvents) Handle(ctx context.Context, ev *eventbridge.Event, scope eventbridge.Scope) (int, eventbridge.Response) {
	resp := eventbridge.Response{Updated: []string{}}
	obs, serviceARN, targetType, err := parseHookEvent(ev)
	if err != nil {
		resp.Error = err.Error()
		return http.StatusBadRequest, resp
	}
	if targetType != "" && targetType != "PAUSE" {
		resp.Result, resp.Message = eventbridge.ResultIgnored, "only pause hooks (targetType PAUSE) await an answer; this is a "+targetType+" hook"
		return http.StatusOK, resp
	}
	list, err := listInScope(ctx, h.Cache, ServiceIndex, serviceName(serviceARN), scope)
	if err != nil {
		resp.Error = "listing Environments failed; retry"
		return http.StatusServiceUnavailable, resp
	}
	for i := range list.Items {
		env := &list.Items[i]
		if !serviceMatches(serviceARN, env.Spec.ECS) {
			continue
		}
		key := client.ObjectKeyFromObject(env)
		outcome, err := h.Hooks.RecordHook(ctx, key, obs)
		switch {
		case err != nil:
			resp.Error = fmt.Sprintf("recording the hook state of %s failed; retry", key)
			return http.StatusServiceUnavailable, resp
		case outcome == HookEarly:
			resp.Error = fmt.Sprintf("a deploy of %s to this service is still being recorded; retry", key)
			return http.StatusServiceUnavailable, resp
		case outcome == HookApplied:
			resp.Updated = append(resp.Updated, key.String())
		case outcome == HookUnchanged:
			resp.Duplicate = append(resp.Duplicate, key.String())
		}
	}
	sumUp(&resp, "no Environment is rolling out this service deployment")
	return http.StatusOK, resp
}

// listInScope lists the Environments in scope whose field index has value.
func listInScope(ctx context.Context, c client.Reader, index, value string, scope eventbridge.Scope) (*deployv1.EnvironmentList, error) {
	list := &deployv1.EnvironmentList{}
	opts := []client.ListOption{client.MatchingFields{index: value}}
	if !scope.All() {
		opts = append(opts, client.InNamespace(scope.Namespace))
	}
	return list, c.List(ctx, list, opts...)
}

// sumUp sets the result of an ECS event from the Environments that recorded it (recorded),
// had it already (duplicate) or none (no-match, with noMatch as the message).
func sumUp(resp *eventbridge.Response, noMatch string) {
	switch {
	case len(resp.Updated) > 0:
		resp.Result = eventbridge.ResultRecorded
	case len(resp.Duplicate) > 0:
		resp.Result = eventbridge.ResultDuplicate
	default:
		resp.Result, resp.Message = eventbridge.ResultNoMatch, noMatch
	}
}
