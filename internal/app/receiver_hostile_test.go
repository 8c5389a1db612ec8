package app_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/app"
	"github.com/autodeploy-dev/autodeploy/internal/manifest"
	"github.com/autodeploy-dev/autodeploy/internal/receiver"
)

func TestHostileInputsGetTheirStatusAndWriteNothing(t *testing.T) {
	h := newHarness(t, withReceiver(func(o *app.ReceiverOptions) { o.ReadHeaderTimeout = 300 * time.Millisecond }))
	g := h.g
	h.seedService("prod", "shop-api", image("v1"))
	h.createEnv("prod", nil)
	h.createEnv("sample", func(e *deployv1.Environment) { e.Spec.Application = "my-sample-project"; e.Spec.Branch = "" })
	h.setTenantKeys(h.ns, map[string]string{receiver.SecretManifestKey: keyA, receiver.SecretEventBridgeKey: eventKeyA})
	h.startManager()
	now := time.Now()

	man := string(newBuild(9).body())
	withApp := func(app string) string { return strings.Replace(man, `"shop-api"`, fmt.Sprintf("%q", app), 1) }
	cb := string(codeBuildEvent("hostile", "hostile-build", 9))
	withVar := func(name, value string) string {
		return string(editEvent([]byte(cb), func(ev map[string]any) {
			list := evInfo(ev)["exported-environment-variables"].([]any)
			evInfo(ev)["exported-environment-variables"] = append(list, map[string]any{"name": name, "value": value})
		}))
	}
	tenMiB := bytes.Repeat([]byte(" "), 10<<20)

	type request struct {
		name        string
		event       bool // an event (API key) rather than a signed manifest
		body        []byte
		hideLength  bool // send chunked, without Content-Length
		contentType string
		header      map[string]string
		code        int
		errSubstr   string
	}
	cases := []request{
		{name: "truncated manifest", body: []byte(man[:len(man)/2]), code: 400, errSubstr: "invalid JSON"},
		{name: "truncated event", event: true, body: []byte(cb[:len(cb)/3]), code: 400, errSubstr: "invalid JSON"},
		{name: "huge float buildNumber", body: []byte(strings.Replace(man, `"buildNumber":9`, `"buildNumber":1e400`, 1)), code: 400, errSubstr: `"buildNumber"`},
		{name: "buildNumber past int64", body: []byte(strings.Replace(man, `"buildNumber":9`, `"buildNumber":99999999999999999999`, 1)), code: 400, errSubstr: `"buildNumber"`},
		{name: "huge build-number", event: true, body: []byte(strings.Replace(cb, `"build-number":9`, `"build-number":1e400`, 1)), code: 400, errSubstr: "build-number"},
		{name: "build-number past 2^53", event: true, body: []byte(strings.Replace(cb, `"build-number":9`, `"build-number":9007199254740993`, 1)), code: 400, errSubstr: "build-number"},
		{name: "bidi override in application", body: []byte(withApp("shop\u202e-api")), code: 400, errSubstr: `"application"`},
		{name: "homoglyph application", body: []byte(withApp("ѕhop-api")), code: 400, errSubstr: `"application"`},
		{name: "zero-width joiner in application", body: []byte(withApp("shop\u200d-api")), code: 400, errSubstr: `"application"`},
		{name: "homoglyph application variable", event: true, body: []byte(withVar(receiver.ApplicationVariable, "ѕhop-api")), code: 400, errSubstr: `"application"`},
		{name: "bidi override in project name", event: true, body: []byte(strings.Replace(cb, `"project-name":"my-sample-project"`, `"project-name":"my-sample\u202e-project"`, 1)), code: 400, errSubstr: `"application"`},
		{name: "duplicate manifest key", body: []byte(strings.Replace(man, `"branch":"main"`, `"branch":"main","branch":"dev"`, 1)), code: 400, errSubstr: "more than once"},
		{name: "case-folded manifest key", body: []byte(strings.Replace(man, `"application"`, `"APPLICATION"`, 1)), code: 400, errSubstr: "APPLICATION"},
		{name: "duplicate event key", event: true, body: []byte(strings.Replace(cb, `"build-status":"SUCCEEDED"`, `"build-status":"FAILED","build-status":"SUCCEEDED"`, 1)), code: 400, errSubstr: "more than once"},
		{name: "escaped duplicate event key", event: true, body: []byte(strings.Replace(cb, `"source":"aws.codebuild"`, `"source":"aws.codebuild","\u0073ource":"aws.ecr"`, 1)), code: 400, errSubstr: "more than once"},
		{name: "duplicate exported variable", event: true, body: []byte(withVar("IMAGE_URI", image("evil"))), code: 400, errSubstr: "more than once"},
		{name: "deep nesting", event: true, body: []byte(strings.Replace(cb, `"version":"0"`, `"version":"0","x":`+strings.Repeat("[", 5000)+strings.Repeat("]", 5000), 1)), code: 400, errSubstr: "nested"},
		{name: "invalid UTF-8", event: true, body: []byte(strings.Replace(cb, "my-source-version", "my-\xff\xfe", 1)), code: 400, errSubstr: "UTF-8"},
		{name: "10 MiB manifest", body: append([]byte(man), tenMiB...), code: 413},
		{name: "10 MiB event, chunked", event: true, body: append([]byte(cb), tenMiB...), hideLength: true, code: 413},
		{name: "text/plain", body: []byte(man), contentType: "text/plain", code: 415},
		{name: "no content type", event: true, body: []byte(cb), contentType: "-", code: 415},
		{name: "latin1 charset", body: []byte(man), contentType: "application/json; charset=iso-8859-1", code: 415},
		{name: "form", event: true, body: []byte(cb), contentType: "application/x-www-form-urlencoded", code: 415},
		{name: "32 KiB header", body: []byte(man), header: map[string]string{"X-Padding": strings.Repeat("a", 32<<10)}, code: 431},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			path := manifestsPath(h.ns)
			if tc.event {
				path = eventsPath(h.ns)
			}
			var body io.Reader = bytes.NewReader(tc.body)
			if tc.hideLength {
				body = io.MultiReader(body)
			}
			req, err := http.NewRequest(http.MethodPost, h.mgr.receiverURL+path, body)
			g.Expect(err).NotTo(HaveOccurred())
			switch tc.contentType {
			case "":
				req.Header.Set("Content-Type", "application/json")
			case "-":
			default:
				req.Header.Set("Content-Type", tc.contentType)
			}
			if tc.event {
				req.Header.Set(receiver.APIKeyHeader, eventKeyA)
			} else {
				req.Header.Set(manifest.TimestampHeader, fmt.Sprint(now.Unix()))
				req.Header.Set(manifest.SignatureHeader, manifest.Sign([]byte(keyA), now, tc.body))
			}
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			g.Expect(err).NotTo(HaveOccurred())
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			g.Expect(resp.StatusCode).To(Equal(tc.code), string(raw))
			if tc.errSubstr != "" {
				var answer struct{ Error string }
				g.Expect(json.Unmarshal(raw, &answer)).To(Succeed())
				g.Expect(answer.Error).To(ContainSubstring(tc.errSubstr))
			}
		})
	}

	t.Run("slow-loris headers are cut off", func(t *testing.T) {
		g := NewWithT(t)
		conn, err := net.Dial("tcp", strings.TrimPrefix(h.mgr.receiverURL, "http://"))
		g.Expect(err).NotTo(HaveOccurred())
		defer conn.Close()
		start := time.Now()
		_, err = io.WriteString(conn, "POST "+manifestsPath(h.ns)+" HTTP/1.1\r\nHost: receiver\r\n")
		g.Expect(err).NotTo(HaveOccurred())
		// Trickle a header line every 50 ms, never finishing the headers.
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					if _, err := io.WriteString(conn, "X-Slow: a\r\n"); err != nil {
						return
					}
				}
			}
		}()
		g.Expect(conn.SetReadDeadline(time.Now().Add(10 * time.Second))).To(Succeed())
		_, err = io.ReadAll(conn)
		var netErr net.Error
		g.Expect(errors.As(err, &netErr) && netErr.Timeout()).To(BeFalse(), "the server closed the connection: %v", err)
		g.Expect(time.Since(start)).To(BeNumerically("<", 5*time.Second))
	})

	for _, name := range []string{"prod", "sample"} {
		g.Expect(h.getEnv(name).Status.LatestBuild).To(BeNil(), "%s: no hostile request wrote anything", name)
	}
	g.Expect(h.sim.Calls("RegisterTaskDefinition")).To(BeZero())
	g.Expect(h.sim.Calls("UpdateService")).To(BeZero())
}
