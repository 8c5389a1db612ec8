package receiver

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/autodeploy-dev/autodeploy/internal/manifest"
)

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// edit decodes body, applies f to the generic value and encodes it again.
func edit(t testing.TB, body []byte, f func(ev map[string]any)) []byte {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatal(err)
	}
	f(v)
	out, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func detail(ev map[string]any) map[string]any { return ev["detail"].(map[string]any) }
func info(ev map[string]any) map[string]any {
	return detail(ev)["additional-information"].(map[string]any)
}

func TestCodeBuildFixtureFromAWSDocsMapsToAManifest(t *testing.T) {
	ev, err := ParseEvent(fixture(t, "codebuild-succeeded.json"))
	if err != nil {
		t.Fatal(err)
	}
	if ev.Source != "aws.codebuild" || ev.DetailType != "CodeBuild Build State Change" || ev.ID != "c030038d-8c4d-6141-9545-00ff7b7153EX" {
		t.Fatalf("envelope: %+v", ev)
	}
	m, err := ManifestFromCodeBuild(ev, "")
	if err != nil {
		t.Fatal(err)
	}
	finished := time.Date(2017, 9, 1, 16, 14, 28, 0, time.UTC)
	want := manifest.Manifest{
		Application: "my-sample-project",
		BuildID:     "arn:aws:codebuild:us-west-2:123456789012:build/my-sample-project:8745a7a9-c340-456a-9166-edf953571bEX",
		BuildNumber: 55,
		Image:       "123456789012.dkr.ecr.us-west-2.amazonaws.com/my-sample-project:my-source-version",
		Commit:      "my-source-version",
		FinishedAt:  &finished,
	}
	if m.FinishedAt == nil || !m.FinishedAt.Equal(finished) {
		t.Fatalf("finishedAt %v", m.FinishedAt)
	}
	m.FinishedAt = &finished
	if !reflect.DeepEqual(*m, want) {
		t.Fatalf("got %+v\nwant %+v", *m, want)
	}
}

func TestCodeBuildFields(t *testing.T) {
	base := fixture(t, "codebuild-succeeded.json")
	vars := func(kv ...string) func(map[string]any) {
		return func(ev map[string]any) {
			var list []any
			for i := 0; i < len(kv); i += 2 {
				list = append(list, map[string]any{"name": kv[i], "value": kv[i+1], "type": "PLAINTEXT"})
			}
			info(ev)["exported-environment-variables"] = list
		}
	}
	img := "123456789012.dkr.ecr.us-west-2.amazonaws.com/shop-api@sha256:" + strings.Repeat("ab", 32)
	workerImg := "123456789012.dkr.ecr.us-west-2.amazonaws.com/shop-worker:b55"
	cases := []struct {
		name      string
		imageVar  string
		mutate    func(map[string]any)
		ignored   bool
		field     string
		check     func(*testing.T, *manifest.Manifest)
		errSubstr string
	}{
		{name: "failed build ignored", mutate: func(ev map[string]any) { detail(ev)["build-status"] = "FAILED" }, ignored: true},
		{name: "in progress ignored", mutate: func(ev map[string]any) { detail(ev)["build-status"] = "IN_PROGRESS" }, ignored: true},
		{name: "application and branch variables", mutate: vars("IMAGE_URI", img, ApplicationVariable, "shop-api", BranchVariable, "main"),
			check: func(t *testing.T, m *manifest.Manifest) {
				if m.Application != "shop-api" || m.Branch != "main" || m.Image != img {
					t.Fatalf("%+v", m)
				}
			}},
		{name: "configured image variable", imageVar: "IMAGE", mutate: vars("IMAGE", img),
			check: func(t *testing.T, m *manifest.Manifest) {
				if m.Image != img {
					t.Fatalf("%+v", m)
				}
			}},
		{name: "no image variable", mutate: vars("OTHER", "x"), field: "image", errSubstr: "IMAGE_URI"},
		{name: "bad image", mutate: vars("IMAGE_URI", "Not An Image"), field: "image"},
		{name: "image without tag or digest", mutate: vars("IMAGE_URI", "123456789012.dkr.ecr.us-west-2.amazonaws.com/shop-api"), field: "image"},
		{name: "variable twice", mutate: vars("IMAGE_URI", img, "IMAGE_URI", img+"x"), field: "detail.additional-information.exported-environment-variables"},
		{name: "fractional build number", mutate: func(ev map[string]any) { info(ev)["build-number"] = 55.5 }, field: "detail.additional-information.build-number"},
		{name: "zero build number", mutate: func(ev map[string]any) { info(ev)["build-number"] = 0 }, field: "detail.additional-information.build-number"},
		{name: "string build number", mutate: func(ev map[string]any) { info(ev)["build-number"] = "55" }, field: "detail.additional-information.build-number"},
		{name: "build number above 2^53", mutate: func(ev map[string]any) { info(ev)["build-number"] = 1e17 }, field: "detail.additional-information.build-number"},
		{name: "missing build number", mutate: func(ev map[string]any) { delete(info(ev), "build-number") }, field: "detail.additional-information.build-number"},
		{name: "missing additional information", mutate: func(ev map[string]any) { delete(detail(ev), "additional-information") }, field: "detail.additional-information"},
		{name: "bidi override in project", mutate: func(ev map[string]any) { detail(ev)["project-name"] = "shop\u202e-api" }, field: "application", errSubstr: "project-name"},
		{name: "homoglyph application", mutate: vars("IMAGE_URI", img, ApplicationVariable, "ѕhop-api"), field: "application", errSubstr: ApplicationVariable},
		{name: "zero-width branch", mutate: vars("IMAGE_URI", img, BranchVariable, "ma\u200bin"), field: "branch"},
		{name: "source version that is no commit is dropped", mutate: func(ev map[string]any) { info(ev)["source-version"] = "has spaces in it" },
			check: func(t *testing.T, m *manifest.Manifest) {
				if m.Commit != "" {
					t.Fatalf("commit %q", m.Commit)
				}
			}},
		{name: "an image per container", mutate: vars("IMAGE_URI", img, "AUTODEPLOY_IMAGE_WORKER", workerImg, "AUTODEPLOY_IMAGE_LOG_ROUTER", img, "IMAGE_TAG", "abc123"),
			check: func(t *testing.T, m *manifest.Manifest) {
				// IMAGE_TAG is no container image: only the autodeploy variables are.
				if want := map[string]string{"WORKER": workerImg, "LOG_ROUTER": img}; m.Image != img || !reflect.DeepEqual(m.Images, want) {
					t.Fatalf("%+v", m)
				}
			}},
		{name: "bad container image", mutate: vars("IMAGE_URI", img, "AUTODEPLOY_IMAGE_WORKER", "Not An Image"),
			field: "images.WORKER", errSubstr: "(from exported variable AUTODEPLOY_IMAGE_WORKER) is not a valid image reference"},
		{name: "container image variable without a name", mutate: vars("IMAGE_URI", img, "AUTODEPLOY_IMAGE_", img),
			field: "images", errSubstr: "(from exported variables AUTODEPLOY_IMAGE_*) a container name is empty"},
		{name: "status not a string", mutate: func(ev map[string]any) { detail(ev)["build-status"] = 1 }, field: "detail.build-status"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := ParseEvent(edit(t, base, tc.mutate))
			if err != nil {
				t.Fatal(err)
			}
			m, err := ManifestFromCodeBuild(ev, tc.imageVar)
			switch {
			case tc.ignored:
				if !errors.Is(err, errIgnored) {
					t.Fatalf("got %v, %v; want ignored", m, err)
				}
			case tc.field != "":
				var fe *manifest.FieldError
				if !errors.As(err, &fe) || fe.Field != tc.field {
					t.Fatalf("got %v, want an error on field %q", err, tc.field)
				}
				if !strings.Contains(err.Error(), tc.errSubstr) {
					t.Fatalf("%v does not say %q", err, tc.errSubstr)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				tc.check(t, m)
			}
		})
	}
}

func TestCodeBuildDocExampleWithoutImageIsRejected(t *testing.T) {
	ev, err := ParseEvent(fixture(t, "aws-doc-codebuild-build-state-change.json"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = ManifestFromCodeBuild(ev, "")
	var fe *manifest.FieldError
	if !errors.As(err, &fe) || fe.Field != "image" {
		t.Fatalf("got %v", err)
	}
}

func TestECRFixtures(t *testing.T) {
	ev, err := ParseEvent(fixture(t, "ecr-push.json"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := ManifestFromECR(ev)
	if err != nil {
		t.Fatal(err)
	}
	digest := "sha256:7f5b2640fe6fb4f46592dfd3410c4a79dac4f89e4782432e0378abcd12345678"
	if m.Application != "my-repository-name" || m.BuildID != digest || m.BuildNumber != 1573869274 ||
		m.Image != "123456789012.dkr.ecr.us-west-2.amazonaws.com/my-repository-name@"+digest {
		t.Fatalf("%+v", m)
	}

	// AWS's own example has a 60-digit digest: no valid image reference.
	ev, err = ParseEvent(fixture(t, "aws-doc-ecr-image-action-push.json"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = ManifestFromECR(ev)
	var fe *manifest.FieldError
	if !errors.As(err, &fe) || fe.Field != "image" {
		t.Fatalf("got %v", err)
	}
}

func TestECRFields(t *testing.T) {
	base := fixture(t, "ecr-push.json")
	cases := []struct {
		name    string
		mutate  func(map[string]any)
		ignored bool
		field   string
		check   func(*testing.T, *manifest.Manifest)
	}{
		{name: "delete ignored", mutate: func(ev map[string]any) { detail(ev)["action-type"] = "DELETE" }, ignored: true},
		{name: "failed push ignored", mutate: func(ev map[string]any) { detail(ev)["result"] = "FAILURE" }, ignored: true},
		{name: "namespaced repository", mutate: func(ev map[string]any) { detail(ev)["repository-name"] = "team/shop-api" },
			check: func(t *testing.T, m *manifest.Manifest) {
				if m.Application != "shop-api" || !strings.Contains(m.Image, "/team/shop-api@sha256:") {
					t.Fatalf("%+v", m)
				}
			}},
		{name: "china region", mutate: func(ev map[string]any) { ev["region"] = "cn-north-1" },
			check: func(t *testing.T, m *manifest.Manifest) {
				if !strings.HasPrefix(m.Image, "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/") {
					t.Fatalf("%+v", m)
				}
			}},
		{name: "bad account", mutate: func(ev map[string]any) { ev["account"] = "12345" }, field: "account"},
		{name: "bad region", mutate: func(ev map[string]any) { ev["region"] = "US-EAST-1" }, field: "region"},
		{name: "uppercase repository", mutate: func(ev map[string]any) { detail(ev)["repository-name"] = "Shop" }, field: "detail.repository-name"},
		{name: "zero-width repository", mutate: func(ev map[string]any) { detail(ev)["repository-name"] = "shop\u200b" }, field: "detail.repository-name"},
		{name: "missing digest", mutate: func(ev map[string]any) { delete(detail(ev), "image-digest") }, field: "detail.image-digest"},
		{name: "bad digest", mutate: func(ev map[string]any) { detail(ev)["image-digest"] = "sha256:zz" }, field: "image"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := ParseEvent(edit(t, base, tc.mutate))
			if err != nil {
				t.Fatal(err)
			}
			m, err := ManifestFromECR(ev)
			switch {
			case tc.ignored:
				if !errors.Is(err, errIgnored) {
					t.Fatalf("got %v, %v; want ignored", m, err)
				}
			case tc.field != "":
				var fe *manifest.FieldError
				if !errors.As(err, &fe) || fe.Field != tc.field {
					t.Fatalf("got %v, want an error on field %q", err, tc.field)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				tc.check(t, m)
			}
		})
	}
}

func TestParseEventRejects(t *testing.T) {
	good := string(fixture(t, "ecr-push.json"))
	cases := map[string]string{
		"empty":                   ``,
		"truncated":               good[:len(good)/2],
		"array":                   `[]`,
		"trailing data":           good + `{}`,
		"duplicate top-level key": strings.Replace(good, `"source": "aws.ecr",`, `"source": "aws.ecr", "source": "aws.codebuild",`, 1),
		"duplicate nested key":    strings.Replace(good, `"result": "SUCCESS",`, `"result": "FAILURE", "result": "SUCCESS",`, 1),
		"escaped duplicate key":   strings.Replace(good, `"source": "aws.ecr",`, `"source": "aws.ecr", "\u0073ource": "aws.codebuild",`, 1),
		"missing id":              strings.Replace(good, `"id":`, `"idx":`, 1),
		"missing detail":          strings.Replace(good, `"detail":`, `"detailx":`, 1),
		"detail not an object":    `{"id":"1","source":"s","detail-type":"d","time":"2020-01-01T00:00:00Z","detail":"x"}`,
		"bad time":                strings.Replace(good, `2019-11-16T01:54:34Z`, `Nov 16, 2019`, 1),
		"control char in id":      strings.Replace(good, `13cde686`, `13cde\u0000686`, 1),
		"invalid UTF-8":           strings.Replace(good, `my-repository-name`, "my-\xff", 1),
		"deep nesting":            `{"id":"1","source":"s","detail-type":"d","time":"2020-01-01T00:00:00Z","detail":{"x":` + strings.Repeat(`[`, 100) + strings.Repeat(`]`, 100) + `}}`,
		"uppercase SOURCE only":   strings.Replace(good, `"source":`, `"SOURCE":`, 1),
		"version not a string":    strings.Replace(good, `"version": "0"`, `"version": 1e999999`, 1),
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			if ev, err := ParseEvent([]byte(body)); err == nil {
				t.Fatalf("accepted: %+v", ev)
			}
		})
	}
	// Unknown fields are fine: AWS adds fields over time.
	if _, err := ParseEvent([]byte(strings.Replace(good, `"version": "0",`, `"version": "0", "new-field": {"a": [1, 2]},`, 1))); err != nil {
		t.Fatal(err)
	}
}

func TestParseAPIKey(t *testing.T) {
	basic := func(s string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(s)) }
	cases := []struct {
		header, auth string
		want         string
		err          error
	}{
		{header: "k-0123456789abcdef", want: "k-0123456789abcdef"},
		{header: " k-0123456789abcdef ", want: "k-0123456789abcdef"},
		{auth: basic("autodeploy:secret-0123456789"), want: "secret-0123456789"},
		{auth: "basic " + base64.StdEncoding.EncodeToString([]byte("autodeploy:a:b")), want: "a:b"},
		{err: ErrMissingAPIKey},
		{auth: basic("admin:secret"), err: ErrMalformedAPIKey},
		{auth: basic("autodeploy:"), err: ErrMalformedAPIKey},
		{auth: "Bearer xyz", err: ErrMalformedAPIKey},
		{auth: "Basic !!!", err: ErrMalformedAPIKey},
		{header: strings.Repeat("k", maxAPIKey+1), err: ErrMalformedAPIKey},
	}
	for _, tc := range cases {
		got, err := ParseAPIKey(tc.header, tc.auth)
		if !errors.Is(err, tc.err) || string(got) != tc.want {
			t.Errorf("ParseAPIKey(%q, %q) = %q, %v; want %q, %v", tc.header, tc.auth, got, err, tc.want, tc.err)
		}
	}
}

func TestMatchAPIKey(t *testing.T) {
	a, b := []byte("key-a-0123456789abcdef"), []byte("key-b-0123456789abcdef")
	for _, tc := range []struct {
		keys  [][]byte
		given []byte
		want  bool
	}{
		{[][]byte{a}, a, true},
		{[][]byte{a, b}, b, true},
		{[][]byte{a}, b, false},
		{nil, a, false},
		{nil, nil, false},
		{[][]byte{a}, a[:5], false},
		// The padding keys never match, whatever is presented.
		{nil, dummyKeys[0], false},
		{[][]byte{a}, dummyKeys[1], false},
	} {
		if got := MatchAPIKey(tc.keys, tc.given); got != tc.want {
			t.Errorf("MatchAPIKey(%q, %q) = %v", tc.keys, tc.given, got)
		}
	}
}

func TestSeenSetForgetsAfterTTLAndWhenFull(t *testing.T) {
	s := newSeenSet(time.Minute, 3)
	t0 := time.Unix(1000, 0)
	s.Add("a", t0)
	if !s.Seen("a", t0.Add(59*time.Second)) || s.Seen("a", t0.Add(time.Minute)) {
		t.Fatal("TTL not applied")
	}
	for i, k := range []string{"b", "c", "d", "e"} {
		s.Add(k, t0.Add(time.Duration(i)*time.Second))
	}
	if s.Len() != 3 || s.Seen("b", t0) || !s.Seen("e", t0) {
		t.Fatalf("bound not applied: %d", s.Len())
	}
}

func TestTenantLimiter(t *testing.T) {
	l := &TenantLimiter{Rate: 1, Burst: 2}
	now := time.Unix(1000, 0)
	for i := range 2 {
		if ok, _ := l.Reserve("a", now); !ok {
			t.Fatalf("request %d limited", i)
		}
	}
	ok, wait := l.Reserve("a", now)
	if ok || retryAfterSeconds(wait) != 1 {
		t.Fatalf("third request: %v %v", ok, wait)
	}
	if ok, _ := l.Reserve("b", now); !ok {
		t.Fatal("another tenant was limited")
	}
	if ok, _ := l.Reserve("a", now.Add(time.Second)); !ok {
		t.Fatal("no token after a second")
	}
	var none *TenantLimiter
	if ok, _ := none.Reserve("a", now); !ok {
		t.Fatal("nil limiter limits")
	}
}

func TestCheckContentType(t *testing.T) {
	for v, ok := range map[string]bool{
		"application/json":                  true,
		"application/json; charset=utf-8":   true,
		"Application/JSON; charset=UTF-8":   true,
		"":                                  false,
		"text/plain":                        false,
		"application/json; charset=latin1":  false,
		"application/json; boundary=x":      false,
		"application/x-www-form-urlencoded": false,
		"application/jsonp":                 false,
	} {
		if err := checkContentType(v); (err == nil) != ok {
			t.Errorf("%q: %v", v, err)
		}
	}
}
