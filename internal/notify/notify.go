// Package notify signs a build manifest and posts it to a receiver, as a CI system does.
package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/autodeploy-dev/autodeploy/internal/manifest"
)

// Reply is the receiver's answer.
type Reply struct {
	Status int
	Body   string
}

// OK reports a 2xx answer.
func (r Reply) OK() bool { return r.Status >= 200 && r.Status < 300 }

// Send validates m, signs it with key at now and posts it to baseURL + /v1/manifests.
func Send(ctx context.Context, hc *http.Client, baseURL string, key []byte, m *manifest.Manifest, now time.Time) (Reply, error) {
	return SendTo(ctx, hc, baseURL, "", key, m, now)
}

// SendTo is Send for one tenant: with a namespace it posts to
// /v1/namespaces/<namespace>/manifests, signed with that namespace's key.
func SendTo(ctx context.Context, hc *http.Client, baseURL, namespace string, key []byte, m *manifest.Manifest, now time.Time) (Reply, error) {
	if err := m.Validate(); err != nil {
		return Reply{}, fmt.Errorf("manifest: %w", err)
	}
	body, err := json.Marshal(m)
	if err != nil {
		return Reply{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(baseURL, "/")+manifestsPath(namespace), bytes.NewReader(body))
	if err != nil {
		return Reply{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(manifest.TimestampHeader, strconv.FormatInt(now.Unix(), 10))
	req.Header.Set(manifest.SignatureHeader, manifest.Sign(key, now, body))
	resp, err := hc.Do(req)
	if err != nil {
		return Reply{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return Reply{}, err
	}
	return Reply{Status: resp.StatusCode, Body: strings.TrimSpace(string(raw))}, nil
}

func manifestsPath(namespace string) string {
	if namespace == "" {
		return "/v1/manifests"
	}
	return "/v1/namespaces/" + url.PathEscape(namespace) + "/manifests"
}
