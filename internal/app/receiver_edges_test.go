package app_test

import (
	"bufio"
	"bytes"
	"encoding/json"
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

// rawExchange writes req byte for byte to the receiver and reads one answer. Nothing cleans
// the path or rewrites the headers on the way.
func rawExchange(g Gomega, receiverURL, req string) (int, string) {
	conn, err := net.Dial("tcp", strings.TrimPrefix(receiverURL, "http://"))
	g.Expect(err).NotTo(HaveOccurred())
	defer conn.Close()
	g.Expect(conn.SetDeadline(time.Now().Add(20 * time.Second))).To(Succeed())
	_, err = io.WriteString(conn, req)
	g.Expect(err).NotTo(HaveOccurred())
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	g.Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}

// rawSigned is a POST of body to path, signed with key at ts, with header lines extra (each
// ending in CRLF) after the signature.
func rawSigned(path string, body, key []byte, ts time.Time, extra string) string {
	return fmt.Sprintf("POST %s HTTP/1.1\r\nHost: receiver\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s: %d\r\n%s: %s\r\n%s\r\n%s",
		path, len(body), manifest.TimestampHeader, ts.Unix(), manifest.SignatureHeader, manifest.Sign(key, ts, body), extra, body)
}

func errorOf(g Gomega, raw string) string {
	var answer struct{ Error string }
	g.Expect(json.Unmarshal([]byte(raw), &answer)).To(Succeed(), raw)
	return answer.Error
}

func TestReceiverEdgeCasesAnswerAsDocumentedAndWriteNothing(t *testing.T) {
	h := newHarness(t, withReceiver(func(o *app.ReceiverOptions) { o.ReadTimeout = 3 * time.Second }))
	g := h.g
	h.seedService("prod", "shop-api", image("v1"))
	h.createEnv("prod", nil)
	h.createEnv("sample", func(e *deployv1.Environment) { e.Spec.Application = "my-sample-project"; e.Spec.Branch = "" })
	h.setTenantKeys(h.ns, map[string]string{receiver.SecretManifestKey: keyA, receiver.SecretEventBridgeKey: eventKeyA})
	h.startManager()
	url := h.mgr.receiverURL
	now := time.Now()
	body := newBuild(9).body()
	nothingWritten := func(what string) {
		for _, name := range []string{"prod", "sample"} {
			g.Expect(h.getEnv(name).Status.LatestBuild).To(BeNil(), "%s: %s wrote nothing", name, what)
		}
	}

	// Headers of exactly n bytes, counted as MaxHeaderBytes documents: every field line with
	// its CRLF, the request line and the blank line not.
	withHeaderBytes := func(n int) string {
		fields := fmt.Sprintf("Host: receiver\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s: %d\r\n%s: %s\r\n",
			len(body), manifest.TimestampHeader, now.Unix(), manifest.SignatureHeader, manifest.Sign(testKey, now, body))
		pad := n - len(fields) - len("X-Padding: \r\n")
		fields += "X-Padding: " + strings.Repeat("a", pad) + "\r\n"
		g.Expect(fields).To(HaveLen(n))
		return "POST " + receiver.ManifestPath + " HTTP/1.1\r\n" + fields + "\r\n" + string(body)
	}

	t.Run("headers of 16,385 bytes get 431", func(t *testing.T) {
		g := NewWithT(t)
		code, raw := rawExchange(g, url, withHeaderBytes(receiver.MaxHeaderBytes+1))
		g.Expect(code).To(Equal(http.StatusRequestHeaderFieldsTooLarge), raw)
		g.Expect(errorOf(g, raw)).To(ContainSubstring("16384"))
		nothingWritten("a request with 16,385 header bytes")
	})

	authFailures := []struct {
		name string
		req  string
	}{
		{"no signature", fmt.Sprintf("POST %s HTTP/1.1\r\nHost: receiver\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", receiver.ManifestPath, len(body), body)},
		{"malformed signature", strings.Replace(rawSigned(receiver.ManifestPath, body, testKey, now, ""), manifest.SignatureHeader+": sha256=", manifest.SignatureHeader+": sha256=zz", 1)},
		{"wrong key", rawSigned(receiver.ManifestPath, body, []byte("another-key-0123456789abcdef"), now, "")},
		{"timestamp 9m59s behind", rawSigned(receiver.ManifestPath, body, testKey, now.Add(-599*time.Second), "")},
		{"timestamp 9m59s ahead", rawSigned(receiver.ManifestPath, body, testKey, now.Add(599*time.Second), "")},
		{"good then bad signature", rawSigned(receiver.ManifestPath, body, testKey, now, manifest.SignatureHeader+": "+manifest.Sign([]byte("bad"), now, body)+"\r\n")},
		{"bad then good signature", strings.Replace(rawSigned(receiver.ManifestPath, body, testKey, now, ""), "Content-Length:",
			manifest.SignatureHeader+": "+manifest.Sign([]byte("bad"), now, body)+"\r\nContent-Length:", 1)},
		{"good then bad timestamp", rawSigned(receiver.ManifestPath, body, testKey, now, fmt.Sprintf("%s: %d\r\n", manifest.TimestampHeader, now.Unix()-1))},
		{"bad then good timestamp", strings.Replace(rawSigned(receiver.ManifestPath, body, testKey, now, ""), "Content-Length:",
			fmt.Sprintf("%s: %d\r\nContent-Length:", manifest.TimestampHeader, now.Unix()-1), 1)},
		// Paths under /v1/namespaces/ that name no valid namespace and route, each signed with
		// a valid key of the test's namespace or the cluster-wide one.
		{"escaped slash as namespace", rawSigned("/v1/namespaces/%2F/manifests", body, []byte(keyA), now, "")},
		{"dot-dot namespace", rawSigned("/v1/namespaces/../manifests", body, testKey, now, "")},
		{"dot-dot out of a namespace", rawSigned("/v1/namespaces/"+h.ns+"/../../manifests", body, testKey, now, "")},
		{"empty namespace", rawSigned("/v1/namespaces//manifests", body, testKey, now, "")},
		{"namespace without a route", rawSigned("/v1/namespaces/"+h.ns, body, []byte(keyA), now, "")},
		{"trailing slash", rawSigned(manifestsPath(h.ns)+"/", body, []byte(keyA), now, "")},
		{"unknown route", rawSigned("/v1/namespaces/"+h.ns+"/builds", body, []byte(keyA), now, "")},
	}
	event := codeBuildEvent("edge", "edge-build", 9)
	rawEvent := func(keys ...string) string {
		lines := ""
		for _, k := range keys {
			lines += receiver.APIKeyHeader + ": " + k + "\r\n"
		}
		return fmt.Sprintf("POST %s HTTP/1.1\r\nHost: receiver\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s", eventsPath(h.ns), len(event), lines, event)
	}
	authFailures = append(authFailures,
		struct{ name, req string }{"good then bad API key", rawEvent(eventKeyA, "wrong-key")},
		struct{ name, req string }{"bad then good API key", rawEvent("wrong-key", eventKeyA)},
		struct{ name, req string }{"good API key twice", rawEvent(eventKeyA, eventKeyA)},
		struct{ name, req string }{"wrong API key", rawEvent("wrong-key")},
	)
	for _, tc := range authFailures {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			code, raw := rawExchange(g, url, tc.req)
			g.Expect(code).To(Equal(http.StatusUnauthorized), raw)
			g.Expect(errorOf(g, raw)).To(Equal(receiver.AuthFailedMessage), "one message for every authentication failure")
			g.Expect(raw).NotTo(ContainSubstring("9m"), "never the clock offset")
			nothingWritten(tc.name)
		})
	}

	for _, path := range []string{"/v1/manifests/../manifests", "/v1//manifests", "/v1/manifests/", "/v2/manifests"} {
		t.Run("unknown path "+path, func(t *testing.T) {
			g := NewWithT(t)
			code, raw := rawExchange(g, url, rawSigned(path, body, testKey, now, ""))
			g.Expect(code).To(Equal(http.StatusNotFound), raw)
			g.Expect(errorOf(g, raw)).To(ContainSubstring("not found"))
			nothingWritten(path)
		})
	}

	t.Run("a client that stops mid-body gets 400 without socket addresses", func(t *testing.T) {
		g := NewWithT(t)
		req := rawSigned(receiver.ManifestPath, body, testKey, now, "")
		code, raw := rawExchange(g, url, req[:len(req)-len(body)/2])
		g.Expect(code).To(Equal(http.StatusBadRequest), raw)
		g.Expect(errorOf(g, raw)).To(ContainSubstring("did not arrive in full"))
		g.Expect(raw).NotTo(ContainSubstring("127.0.0.1"))
		g.Expect(raw).NotTo(ContainSubstring("tcp"))
		nothingWritten("a request whose body stopped")
	})

	g.Expect(h.sim.Calls("RegisterTaskDefinition")).To(BeZero())

	// The boundary's other side: headers of exactly 16,384 bytes are accepted.
	code, raw := rawExchange(g, url, withHeaderBytes(receiver.MaxHeaderBytes))
	g.Expect(code).To(Equal(http.StatusAccepted), raw)
	g.Eventually(func() *deployv1.Build { return h.getEnv("prod").Status.LatestBuild }).ShouldNot(BeNil())
	g.Expect(bytes.Contains([]byte(raw), []byte(h.ns+"/prod"))).To(BeTrue(), raw)
}
