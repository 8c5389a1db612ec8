package receiver

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/autodeploy-dev/autodeploy/internal/manifest"
)

// The seed corpora are committed under testdata/fuzz/<FuzzName>/ (and run as ordinary tests);
// `make fuzz` explores from them for a bounded time.

// FuzzParseEvent: the envelope parser never panics, and what it accepts is well-formed.
func FuzzParseEvent(f *testing.F) {
	f.Add(fixture(f, "codebuild-succeeded.json"))
	f.Add(fixture(f, "ecr-push.json"))
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, err := ParseEvent(body)
		if err != nil {
			if ev != nil {
				t.Fatal("an event with an error")
			}
			return
		}
		if ev.ID == "" || ev.Source == "" || ev.DetailType == "" || len(ev.Detail) == 0 || ev.Detail[0] != '{' {
			t.Fatalf("accepted an incomplete event: %+v", ev)
		}
		if checkJSON(body) != nil {
			t.Fatal("accepted a body checkJSON rejects")
		}
	})
}

// checkManifest is what every accepted build must satisfy.
func checkManifest(t *testing.T, m *manifest.Manifest, err error) {
	t.Helper()
	if err != nil {
		if m != nil {
			t.Fatal("a manifest with an error")
		}
		var fe *manifest.FieldError
		if errors.As(err, &fe) && (fe.Field == "" || fe.Reason == "") {
			t.Fatalf("incomplete field error %#v", fe)
		}
		return
	}
	if verr := m.Validate(); verr != nil {
		t.Fatalf("accepted a manifest that fails validation: %v", verr)
	}
}

// FuzzManifestFromCodeBuild: any detail object either maps to a valid manifest, is ignored,
// or is rejected with a named field.
func FuzzManifestFromCodeBuild(f *testing.F) {
	ev, err := ParseEvent(fixture(f, "codebuild-succeeded.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(ev.Detail), "IMAGE_URI")
	f.Add([]byte(`{"build-status":"SUCCEEDED","project-name":"p","build-id":"b","additional-information":{"build-number":1e308,"exported-environment-variables":[{"name":"IMAGE_URI","value":"r/a:1"}]}}`), "IMAGE_URI")
	f.Add([]byte(`{"build-status":"FAILED"}`), "")
	f.Fuzz(func(t *testing.T, detail []byte, imageVar string) {
		if checkJSON(detail) != nil {
			return // ParseEvent rejects these before
		}
		m, err := ManifestFromCodeBuild(&Event{Detail: detail, Time: time.Unix(1700000000, 0)}, imageVar)
		checkManifest(t, m, err)
	})
}

// FuzzManifestFromECR: likewise for ECR pushes.
func FuzzManifestFromECR(f *testing.F) {
	ev, err := ParseEvent(fixture(f, "ecr-push.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(ev.Detail), "123456789012", "us-west-2", int64(1573869274))
	f.Add([]byte(`{"action-type":"PUSH","result":"SUCCESS","repository-name":"a/b","image-digest":"sha256:`+strings.Repeat("0", 64)+`"}`), "123456789012", "cn-north-1", int64(-1))
	f.Fuzz(func(t *testing.T, detail []byte, account, region string, unix int64) {
		if checkJSON(detail) != nil {
			return
		}
		m, err := ManifestFromECR(&Event{Detail: detail, Account: account, Region: region, Time: time.Unix(unix%(1<<40), 0)})
		checkManifest(t, m, err)
		if err == nil && m.BuildNumber <= 0 {
			t.Fatalf("build number %d", m.BuildNumber)
		}
	})
}

// FuzzParseAPIKey: a key is returned only from the API key header or from basic auth with the
// autodeploy user, and is never empty.
func FuzzParseAPIKey(f *testing.F) {
	f.Add("k-0123456789abcdef", "")
	f.Add("", "Basic "+base64.StdEncoding.EncodeToString([]byte("autodeploy:secret-0123456789")))
	f.Add("", "Basic "+base64.StdEncoding.EncodeToString([]byte("root:x")))
	f.Add("", "Bearer abc")
	f.Fuzz(func(t *testing.T, header, authorization string) {
		key, err := ParseAPIKey(header, authorization)
		if err != nil {
			if key != nil {
				t.Fatal("a key with an error")
			}
			return
		}
		if len(key) == 0 || len(key) > maxAPIKey {
			t.Fatalf("key of %d bytes", len(key))
		}
		if header == "" {
			raw, derr := base64.StdEncoding.DecodeString(strings.TrimSpace(authorization[strings.IndexByte(authorization, ' ')+1:]))
			if derr != nil || string(raw) != BasicAuthUser+":"+string(key) {
				t.Fatalf("key %q not from basic auth %q", key, authorization)
			}
		}
		if !MatchAPIKey([][]byte{key}, key) || MatchAPIKey(nil, key) {
			t.Fatal("MatchAPIKey disagrees")
		}
	})
}
