package manifest_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/autodeploy-dev/autodeploy/internal/manifest"
)

const (
	digest    = "sha256:0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"
	repo      = "123456789012.dkr.ecr.us-east-1.amazonaws.com/shop-api"
	exampleTS = "2026-11-25T10:00:00Z"
)

// field is one key of a manifest body with its raw JSON value, so that bodies can carry
// values json.Marshal would never produce.
type field struct{ key, raw string }

func exampleFields() []field {
	return []field{
		{"application", `"shop-api"`},
		{"buildId", `"shop-api:9f1c"`},
		{"buildNumber", `142`},
		{"image", `"` + repo + `@` + digest + `"`},
		{"commit", `"3f2c9e1"`},
		{"branch", `"main"`},
		{"finishedAt", `"` + exampleTS + `"`},
	}
}

type mod func([]field) []field

// set replaces the value of key, or appends key when it is not there.
func set(key, raw string) mod {
	return func(fs []field) []field {
		for i := range fs {
			if fs[i].key == key {
				fs[i].raw = raw
				return fs
			}
		}
		return append(fs, field{key, raw})
	}
}

// add appends key even when it is already there.
func add(key, raw string) mod {
	return func(fs []field) []field { return append(fs, field{key, raw}) }
}

func without(key string) mod {
	return func(fs []field) []field {
		out := fs[:0]
		for _, f := range fs {
			if f.key != key {
				out = append(out, f)
			}
		}
		return out
	}
}

func str(s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func body(mods ...mod) string {
	fs := exampleFields()
	for _, m := range mods {
		fs = m(fs)
	}
	var b strings.Builder
	b.WriteByte('{')
	for i, f := range fs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"` + f.key + `":` + f.raw)
	}
	b.WriteByte('}')
	return b.String()
}

func timePtr(s string) *time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return &t
}

func example() manifest.Manifest {
	return manifest.Manifest{
		Application: "shop-api",
		BuildID:     "shop-api:9f1c",
		BuildNumber: 142,
		Image:       repo + "@" + digest,
		Commit:      "3f2c9e1",
		Branch:      "main",
		FinishedAt:  timePtr(exampleTS),
	}
}

func TestParseValid(t *testing.T) {
	exampleWith := func(f func(*manifest.Manifest)) manifest.Manifest {
		m := example()
		f(&m)
		return m
	}
	tests := []struct {
		name string
		body string
		want manifest.Manifest
	}{
		{
			name: "the documented example",
			body: `{"application":"shop-api","buildId":"shop-api:9f1c","buildNumber":142,` +
				`"image":"` + repo + `@` + digest + `","commit":"3f2c9e1","branch":"main","finishedAt":"2026-11-25T10:00:00Z"}`,
			want: example(),
		},
		{
			name: "tag-only image and no optional fields",
			body: body(set("image", str(repo+":1.4.2")), without("commit"), without("branch"), without("finishedAt")),
			want: manifest.Manifest{Application: "shop-api", BuildID: "shop-api:9f1c", BuildNumber: 142, Image: repo + ":1.4.2"},
		},
		{
			name: "tag and digest image",
			body: body(set("image", str(repo+":1.4.2@"+digest))),
			want: exampleWith(func(m *manifest.Manifest) { m.Image = repo + ":1.4.2@" + digest }),
		},
		{
			name: "registry with a port and a nested repository",
			body: body(set("image", str("registry.example.com:5000/team/shop-api:v1"))),
			want: exampleWith(func(m *manifest.Manifest) { m.Image = "registry.example.com:5000/team/shop-api:v1" }),
		},
		{
			name: "finishedAt null",
			body: body(set("finishedAt", "null")),
			want: exampleWith(func(m *manifest.Manifest) { m.FinishedAt = nil }),
		},
		{
			name: "finishedAt with an offset and fractional seconds",
			body: body(set("finishedAt", `"2026-11-25T11:30:00.123456789+01:30"`)),
			want: exampleWith(func(m *manifest.Manifest) { m.FinishedAt = timePtr("2026-11-25T11:30:00.123456789+01:30") }),
		},
		{
			name: "largest buildNumber",
			body: body(set("buildNumber", "9223372036854775807")),
			want: exampleWith(func(m *manifest.Manifest) { m.BuildNumber = 9223372036854775807 }),
		},
		{
			name: "buildNumber written with an exponent-free integer of one",
			body: body(set("buildNumber", "1")),
			want: exampleWith(func(m *manifest.Manifest) { m.BuildNumber = 1 }),
		},
		{
			name: "fields at their maximum length",
			body: body(
				set("application", str("a"+strings.Repeat("b", 251)+"c")),
				set("buildId", str(strings.Repeat("x", 255))),
				set("commit", str(strings.Repeat("f", 255))),
				set("branch", str(strings.Repeat("r", 255))),
			),
			want: exampleWith(func(m *manifest.Manifest) {
				m.Application = "a" + strings.Repeat("b", 251) + "c"
				m.BuildID = strings.Repeat("x", 255)
				m.Commit = strings.Repeat("f", 255)
				m.Branch = strings.Repeat("r", 255)
			}),
		},
		{
			name: "non-ASCII printable branch",
			body: body(set("branch", str("feature/ünïcödé-日本"))),
			want: exampleWith(func(m *manifest.Manifest) { m.Branch = "feature/ünïcödé-日本" }),
		},
		{
			name: "application with dots, dashes and underscores; whitespace around the object",
			body: "\n\t " + body(set("application", `"Shop_api.v2-x"`)) + " \r\n",
			want: exampleWith(func(m *manifest.Manifest) { m.Application = "Shop_api.v2-x" }),
		},
		{
			name: "keys in another order",
			body: `{"finishedAt":"2026-11-25T10:00:00Z","branch":"main","commit":"3f2c9e1","image":"` + repo + `@` + digest +
				`","buildNumber":142,"buildId":"shop-api:9f1c","application":"shop-api"}`,
			want: example(),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			m, err := manifest.Parse([]byte(tt.body))
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(m).NotTo(BeNil())
			if tt.want.FinishedAt == nil {
				g.Expect(m.FinishedAt).To(BeNil())
			} else {
				g.Expect(m.FinishedAt).NotTo(BeNil())
				g.Expect(*m.FinishedAt).To(BeTemporally("==", *tt.want.FinishedAt))
			}
			got, want := *m, tt.want
			got.FinishedAt, want.FinishedAt = nil, nil
			g.Expect(got).To(Equal(want))
			g.Expect(m.Validate()).To(Succeed())
		})
	}
}

func TestParseInvalid(t *testing.T) {
	valid := body()
	tests := []struct {
		name string
		body string
		// field is the field a *FieldError must name; empty when the body as a whole is wrong
		// and the error must not be a *FieldError.
		field string
	}{
		// The body as a whole.
		{name: "empty body", body: ""},
		{name: "only whitespace", body: " \n\t"},
		{name: "not JSON", body: "application=shop-api"},
		{name: "truncated object", body: valid[:len(valid)-1]},
		{name: "JSON array", body: "[" + valid + "]"},
		{name: "empty JSON array", body: "[]"},
		{name: "JSON string", body: `"shop-api"`},
		{name: "JSON number", body: `142`},
		{name: "trailing object", body: valid + "{}"},
		{name: "second manifest", body: valid + "\n" + valid},
		{name: "trailing garbage", body: valid + " x"},
		{name: "trailing comma", body: valid + ","},
		{name: "invalid UTF-8 in a value", body: body(set("branch", "\"ma\xffin\""))},
		{name: "invalid UTF-8 in a key", body: body(set("bra\xc3nch", `"main"`))},
		{name: "invalid UTF-8 overlong encoding", body: body(set("branch", "\"\xc0\xafmain\""))},

		// Keys.
		{name: "unknown field", body: body(set("extra", `"x"`)), field: "extra"},
		{name: "unknown field with null value", body: body(set("environment", `null`)), field: "environment"},
		{name: "known field in other case", body: body(set("APPLICATION", `"evil"`)), field: "APPLICATION"},
		{name: "known field in title case", body: body(set("BuildNumber", `7`)), field: "BuildNumber"},
		{name: "repeated field", body: body(add("image", str(repo+":evil"))), field: "image"},

		// Wrong types.
		{name: "application a number", body: body(set("application", `5`)), field: "application"},
		{name: "application an object", body: body(set("application", `{}`)), field: "application"},
		{name: "buildId a boolean", body: body(set("buildId", `true`)), field: "buildId"},
		{name: "buildId a number", body: body(set("buildId", `9`)), field: "buildId"},
		{name: "buildNumber a string", body: body(set("buildNumber", `"142"`)), field: "buildNumber"},
		{name: "buildNumber a float", body: body(set("buildNumber", `142.5`)), field: "buildNumber"},
		{name: "buildNumber an integral float", body: body(set("buildNumber", `142.0`)), field: "buildNumber"},
		{name: "buildNumber with an exponent", body: body(set("buildNumber", `1e3`)), field: "buildNumber"},
		{name: "buildNumber beyond int64", body: body(set("buildNumber", `9223372036854775808`)), field: "buildNumber"},
		{name: "buildNumber far beyond int64", body: body(set("buildNumber", `99999999999999999999999999`)), field: "buildNumber"},
		{name: "buildNumber below int64", body: body(set("buildNumber", `-9223372036854775809`)), field: "buildNumber"},
		{name: "buildNumber a boolean", body: body(set("buildNumber", `true`)), field: "buildNumber"},
		{name: "image an array", body: body(set("image", `["`+repo+`:1"]`)), field: "image"},
		{name: "commit a number", body: body(set("commit", `3`)), field: "commit"},
		{name: "branch an object", body: body(set("branch", `{"name":"main"}`)), field: "branch"},
		{name: "finishedAt a number", body: body(set("finishedAt", `1795600800`)), field: "finishedAt"},
		{name: "finishedAt a boolean", body: body(set("finishedAt", `false`)), field: "finishedAt"},
		{name: "finishedAt an object", body: body(set("finishedAt", `{}`)), field: "finishedAt"},

		// Missing or empty required fields.
		{name: "application missing", body: body(without("application")), field: "application"},
		{name: "buildId missing", body: body(without("buildId")), field: "buildId"},
		{name: "buildNumber missing", body: body(without("buildNumber")), field: "buildNumber"},
		{name: "image missing", body: body(without("image")), field: "image"},
		{name: "empty object", body: `{}`, field: "application"},
		{name: "JSON null", body: `null`, field: "application"},
		{name: "application null", body: body(set("application", `null`)), field: "application"},
		{name: "application empty", body: body(set("application", `""`)), field: "application"},
		{name: "buildId empty", body: body(set("buildId", `""`)), field: "buildId"},
		{name: "buildNumber null", body: body(set("buildNumber", `null`)), field: "buildNumber"},
		{name: "image empty", body: body(set("image", `""`)), field: "image"},

		// Values.
		{name: "buildNumber zero", body: body(set("buildNumber", `0`)), field: "buildNumber"},
		{name: "buildNumber negative", body: body(set("buildNumber", `-1`)), field: "buildNumber"},
		{name: "application starting with a dash", body: body(set("application", `"-shop"`)), field: "application"},
		{name: "application ending with a dot", body: body(set("application", `"shop."`)), field: "application"},
		{name: "application with a slash", body: body(set("application", `"shop/api"`)), field: "application"},
		{name: "application with a space", body: body(set("application", `"shop api"`)), field: "application"},
		{name: "application non-ASCII", body: body(set("application", str("shöp"))), field: "application"},
		{name: "image without tag or digest", body: body(set("image", str(repo))), field: "image"},
		{name: "image with an uppercase repository", body: body(set("image", str("123456789012.dkr.ecr.us-east-1.amazonaws.com/Shop-API:1"))), field: "image"},
		{name: "image with a space", body: body(set("image", str(repo+":1 .2"))), field: "image"},
		{name: "image with a leading space", body: body(set("image", str(" "+repo+":1"))), field: "image"},
		{name: "image with a trailing newline", body: body(set("image", str(repo+":1\n"))), field: "image"},
		{name: "image with a short digest", body: body(set("image", str(repo+"@sha256:0f1e"))), field: "image"},
		{name: "image with an empty tag", body: body(set("image", str(repo+":"))), field: "image"},
		{name: "image a URL", body: body(set("image", str("https://"+repo+":1"))), field: "image"},
		{name: "image not canonical", body: body(set("image", str("docker.io/nginx:1"))), field: "image"},
		{name: "finishedAt a date only", body: body(set("finishedAt", `"2026-11-25"`)), field: "finishedAt"},
		{name: "finishedAt without a zone", body: body(set("finishedAt", `"2026-11-25T10:00:00"`)), field: "finishedAt"},
		{name: "finishedAt with a space separator", body: body(set("finishedAt", `"2026-11-25 10:00:00Z"`)), field: "finishedAt"},
		{name: "finishedAt month 13", body: body(set("finishedAt", `"2026-13-25T10:00:00Z"`)), field: "finishedAt"},
		{name: "finishedAt words", body: body(set("finishedAt", `"yesterday"`)), field: "finishedAt"},
		{name: "finishedAt empty", body: body(set("finishedAt", `""`)), field: "finishedAt"},

		// Invisible and control characters.
		{name: "buildId with NUL", body: body(set("buildId", `"a\u0000b"`)), field: "buildId"},
		{name: "buildId with a tab", body: body(set("buildId", `"a\tb"`)), field: "buildId"},
		{name: "buildId with a space", body: body(set("buildId", `"a b"`)), field: "buildId"},
		{name: "buildId with DEL", body: body(set("buildId", `"a\u007fb"`)), field: "buildId"},
		{name: "buildId with a C1 control", body: body(set("buildId", `"a\u0085b"`)), field: "buildId"},
		{name: "buildId with an escape sequence", body: body(set("buildId", `"\u001b[31mred"`)), field: "buildId"},
		{name: "buildId with a zero-width space", body: body(set("buildId", str("shop-api:9f1c\u200b"))), field: "buildId"},
		{name: "buildId with a right-to-left override", body: body(set("buildId", str("shop-api:\u202e9f1c"))), field: "buildId"},
		{name: "branch with a newline", body: body(set("branch", `"main\n"`)), field: "branch"},
		{name: "branch with a zero-width space", body: body(set("branch", str("ma\u200bin"))), field: "branch"},
		{name: "branch with a zero-width joiner", body: body(set("branch", str("ma\u200din"))), field: "branch"},
		{name: "branch with a zero-width non-joiner", body: body(set("branch", str("ma\u200cin"))), field: "branch"},
		{name: "branch with a word joiner", body: body(set("branch", str("ma\u2060in"))), field: "branch"},
		{name: "branch with a byte-order mark", body: body(set("branch", str("\ufeffmain"))), field: "branch"},
		{name: "branch with a right-to-left override", body: body(set("branch", str("main\u202ecod.exe"))), field: "branch"},
		{name: "branch with a left-to-right override", body: body(set("branch", str("main\u202d"))), field: "branch"},
		{name: "branch with a right-to-left isolate", body: body(set("branch", str("main\u2067x"))), field: "branch"},
		{name: "branch with a right-to-left mark", body: body(set("branch", str("main\u200f"))), field: "branch"},
		{name: "branch with a no-break space", body: body(set("branch", str("ma\u00a0in"))), field: "branch"},
		{name: "branch with a line separator", body: body(set("branch", `"ma\u2028in"`)), field: "branch"},
		{name: "branch with an ideographic space", body: body(set("branch", str("ma\u3000in"))), field: "branch"},
		{name: "branch with a lone surrogate escape", body: body(set("branch", `"ma\udc00in"`)), field: "branch"},
		{name: "commit with a carriage return", body: body(set("commit", `"3f2c9e1\r"`)), field: "commit"},
		{name: "commit with a zero-width space", body: body(set("commit", str("3f2c\u200b9e1"))), field: "commit"},

		// Over-long fields.
		{name: "application too long", body: body(set("application", str(strings.Repeat("a", 254)))), field: "application"},
		{name: "buildId too long", body: body(set("buildId", str(strings.Repeat("x", 256)))), field: "buildId"},
		{name: "image too long", body: body(set("image", str(repo+"/"+strings.Repeat("a/", 600)+"x:1"))), field: "image"},
		{name: "commit too long", body: body(set("commit", str(strings.Repeat("f", 256)))), field: "commit"},
		{name: "branch too long", body: body(set("branch", str(strings.Repeat("r", 256)))), field: "branch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			m, err := manifest.Parse([]byte(tt.body))
			g.Expect(err).To(HaveOccurred())
			g.Expect(m).To(BeNil())
			var fe *manifest.FieldError
			if tt.field == "" {
				g.Expect(errors.As(err, &fe)).To(BeFalse(), "error %v should not blame a field", err)
				return
			}
			g.Expect(errors.As(err, &fe)).To(BeTrue(), "error %v (%T) should be a *FieldError", err, err)
			g.Expect(fe.Field).To(Equal(tt.field), "error: %v", err)
			g.Expect(fe.Reason).NotTo(BeEmpty())
			g.Expect(err.Error()).To(ContainSubstring(`"` + tt.field + `"`))
		})
	}
}

// The valid bodies must really be valid, or the invalid cases above prove nothing.
func TestBodyHelperIsValid(t *testing.T) {
	g := NewWithT(t)
	_, err := manifest.Parse([]byte(body()))
	g.Expect(err).NotTo(HaveOccurred())
}

func TestValidateImage(t *testing.T) {
	tests := []struct {
		image string
		ok    bool
	}{
		{repo + ":1", true},
		{repo + "@" + digest, true},
		{repo + ":1@" + digest, true},
		{"", false},
		{repo, false},
		{repo + ":UPPER_tag-ok.1", true},
		{strings.ToUpper(repo) + ":1", false},
		{repo + ":" + strings.Repeat("t", 129), false},
		{strings.Repeat("a", 1020) + ":1234", false},
	}
	for _, tt := range tests {
		t.Run(tt.image, func(t *testing.T) {
			g := NewWithT(t)
			err := manifest.ValidateImage(tt.image)
			if tt.ok {
				g.Expect(err).NotTo(HaveOccurred())
			} else {
				g.Expect(err).To(HaveOccurred())
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(body()))
	f.Add([]byte(body(set("image", str(repo+":1.4.2")), without("finishedAt"))))
	f.Add([]byte(body(set("finishedAt", `"2026-11-25T11:30:00.5+01:30"`))))
	f.Add([]byte(body(set("buildNumber", `1e3`))))
	f.Add([]byte(body(add("application", `"x"`))))
	f.Add([]byte(body() + "{}"))
	f.Add([]byte(body(set("images", `{"web":"`+repo+`:1.4.2","worker":"`+repo+`-worker:1.4.2"}`))))
	f.Add([]byte(body(set("images", `{"web":"a","web":"b"}`))))
	f.Add([]byte(`[]`))
	f.Add([]byte(``))
	f.Add([]byte(`{"application":"a","buildId":"b","buildNumber":1,"image":"r/a:1","branch":"\u202e"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := manifest.Parse(data)
		if err != nil {
			if m != nil {
				t.Fatalf("Parse returned a manifest with error %v", err)
			}
			var fe *manifest.FieldError
			if errors.As(err, &fe) && fe.Reason == "" {
				t.Fatalf("FieldError without a reason: %#v", fe)
			}
			return
		}
		if m == nil {
			t.Fatal("Parse returned neither a manifest nor an error")
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("Parse accepted %q, which fails Validate: %v", data, err)
		}
		// What was accepted must survive encoding and parsing again unchanged.
		again, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("cannot encode accepted manifest %#v: %v", m, err)
		}
		m2, err := manifest.Parse(again)
		if err != nil {
			t.Fatalf("re-encoded manifest %s rejected: %v", again, err)
		}
		if (m.FinishedAt == nil) != (m2.FinishedAt == nil) || (m.FinishedAt != nil && !m.FinishedAt.Equal(*m2.FinishedAt)) {
			t.Fatalf("finishedAt changed: %v -> %v", m.FinishedAt, m2.FinishedAt)
		}
		a, b := *m, *m2
		a.FinishedAt, b.FinishedAt = nil, nil
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("round trip changed the manifest: %#v -> %#v", a, b)
		}
	})
}

func BenchmarkParse(b *testing.B) {
	data := []byte(body())
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := manifest.Parse(data); err != nil {
			b.Fatal(err)
		}
	}
}
