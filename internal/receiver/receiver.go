// Package receiver is the HTTP endpoint CI systems post build manifests to. It authenticates
// each manifest, records it as status.latestBuild of every matching Environment and answers
// only after the API server accepted the write, so a failed write makes the sender retry.
package receiver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/manifest"
	"github.com/autodeploy-dev/autodeploy/internal/metrics"
)

// ApplicationIndex is the field index on spec.application used to find the Environments a
// manifest updates.
const ApplicationIndex = "spec.application"

// MaxBodyBytes caps a manifest request body.
const MaxBodyBytes = 1 << 20

// ManifestPath is where manifests are posted.
const ManifestPath = "/v1/manifests"

// EventBuildReceived is the Event reason for a recorded build.
const EventBuildReceived = "BuildReceived"

// IndexApplication registers ApplicationIndex with the manager's field indexer.
func IndexApplication(ctx context.Context, indexer client.FieldIndexer) error {
	return indexer.IndexField(ctx, &deployv1.Environment{}, ApplicationIndex, func(o client.Object) []string {
		return []string{o.(*deployv1.Environment).Spec.Application}
	})
}

// Handler serves ManifestPath.
type Handler struct {
	// Cache lists Environments by ApplicationIndex.
	Cache client.Reader
	// Live reads an Environment from the API server before each write.
	Live client.Reader
	// Writer writes the status.
	Writer client.StatusClient
	// Keys returns the keys a signature may be made with.
	Keys func() [][]byte
	// Recorder emits a BuildReceived Event per recorded Environment.
	Recorder events.EventRecorder
	Log      logr.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Response is the JSON body of every answer.
type Response struct {
	Application string `json:"application,omitempty"`
	BuildID     string `json:"buildId,omitempty"`
	BuildNumber int64  `json:"buildNumber,omitempty"`
	// Updated lists the Environments (namespace/name) that recorded the build.
	Updated   []string `json:"updated"`
	Duplicate []string `json:"duplicate,omitempty"`
	Stale     []string `json:"stale,omitempty"`
	Conflicts []string `json:"conflicts,omitempty"`
	Error     string   `json:"error,omitempty"`
}

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

// ServeHTTP handles one manifest.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	code, resp := h.serve(r)
	metrics.ReceiverRequests.WithLabelValues(strconv.Itoa(code)).Inc()
	if code == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", http.MethodPost)
	}
	if code == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "5")
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(resp)
}

func (h *Handler) serve(r *http.Request) (int, Response) {
	if r.Method != http.MethodPost {
		return http.StatusMethodNotAllowed, Response{Error: "method " + r.Method + " not allowed: POST a manifest"}
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
	if err != nil {
		return http.StatusBadRequest, Response{Error: "reading body: " + err.Error()}
	}
	if len(body) > MaxBodyBytes {
		return http.StatusRequestEntityTooLarge, Response{Error: fmt.Sprintf("body larger than %d bytes", MaxBodyBytes)}
	}
	if err := manifest.Verify(h.Keys(), r.Header.Get(manifest.TimestampHeader), r.Header.Get(manifest.SignatureHeader), body, h.now()); err != nil {
		h.Log.Info("Rejected manifest: authentication failed", "remote", remoteHost(r), "error", err.Error())
		return http.StatusUnauthorized, Response{Error: "authentication failed: " + err.Error()}
	}
	m, err := manifest.Parse(body)
	if err != nil {
		return http.StatusBadRequest, Response{Error: "invalid manifest: " + err.Error()}
	}
	return h.apply(r.Context(), m)
}

func (h *Handler) apply(ctx context.Context, m *manifest.Manifest) (int, Response) {
	resp := Response{Application: m.Application, BuildID: m.BuildID, BuildNumber: m.BuildNumber, Updated: []string{}}
	list := &deployv1.EnvironmentList{}
	if err := h.Cache.List(ctx, list, client.MatchingFields{ApplicationIndex: m.Application}); err != nil {
		h.Log.Error(err, "Listing Environments for manifest failed", "application", m.Application)
		resp.Error = "listing Environments failed; retry"
		return http.StatusServiceUnavailable, resp
	}
	sort.Slice(list.Items, func(i, j int) bool {
		return list.Items[i].Namespace+"/"+list.Items[i].Name < list.Items[j].Namespace+"/"+list.Items[j].Name
	})
	now := h.now()
	var failed error
	for i := range list.Items {
		env := &list.Items[i]
		if env.Spec.Branch != "" && env.Spec.Branch != m.Branch {
			continue
		}
		key := types.NamespacedName{Namespace: env.Namespace, Name: env.Name}
		outcome, err := record(ctx, h.Live, h.Writer, key, m, now)
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
			h.Log.Info("Recorded build on Environment", "environment", key, "buildID", m.BuildID, "buildNumber", m.BuildNumber, "image", m.Image)
			if h.Recorder != nil {
				h.Recorder.Eventf(env, nil, "Normal", EventBuildReceived, "RecordBuild",
					"Build %d (%s) of %s: %s", m.BuildNumber, m.BuildID, m.Application, m.Image)
			}
		case Duplicate:
			resp.Duplicate = append(resp.Duplicate, name)
		case Stale:
			resp.Stale = append(resp.Stale, name)
		case Conflict:
			resp.Conflicts = append(resp.Conflicts, name)
		}
	}
	switch {
	case failed != nil:
		resp.Error = "writing to the API server failed; retry"
		return http.StatusServiceUnavailable, resp
	case len(resp.Conflicts) > 0:
		resp.Error = fmt.Sprintf("another build already has number %d", m.BuildNumber)
		return http.StatusConflict, resp
	case len(resp.Updated) > 0:
		return http.StatusAccepted, resp
	default:
		return http.StatusOK, resp
	}
}

func remoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
