package manifest_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/autodeploy-dev/autodeploy/internal/manifest"
)

var (
	oldKey = []byte("old-key-0123456789abcdef")
	newKey = []byte("new-key-fedcba9876543210")
	// now is the receiver's clock in the signature tests.
	now = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
)

func ts(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }

// TestSignWireFormat pins the signature format CI systems implement on their own:
// "sha256=" and the lowercase hex HMAC-SHA256 of "<unix seconds>.<body>".
func TestSignWireFormat(t *testing.T) {
	g := NewWithT(t)
	payload := []byte(body())
	h := hmac.New(sha256.New, newKey)
	h.Write([]byte(ts(now) + "." + string(payload)))
	want := "sha256=" + hex.EncodeToString(h.Sum(nil))

	g.Expect(manifest.Sign(newKey, now, payload)).To(Equal(want))
	// Only whole seconds are signed.
	g.Expect(manifest.Sign(newKey, now.Add(999*time.Millisecond), payload)).To(Equal(want))
	g.Expect(manifest.Sign(oldKey, now, payload)).NotTo(Equal(want))
	g.Expect(manifest.Sign(newKey, now.Add(time.Second), payload)).NotTo(Equal(want))
	g.Expect(manifest.Sign(newKey, now, append(payload, ' '))).NotTo(Equal(want))
}

func TestVerify(t *testing.T) {
	payload := []byte(body())
	good := manifest.Sign(newKey, now, payload)
	bareHex := strings.TrimPrefix(good, "sha256=")
	tests := []struct {
		name      string
		keys      [][]byte
		timestamp string
		signature string
		body      []byte
		want      error // nil: accepted
	}{
		{name: "round trip", keys: [][]byte{newKey}, timestamp: ts(now), signature: good, body: payload},
		{name: "empty body signed", keys: [][]byte{newKey}, timestamp: ts(now), signature: manifest.Sign(newKey, now, nil), body: nil},
		{name: "rotation: signed with the new of two keys", keys: [][]byte{oldKey, newKey}, timestamp: ts(now), signature: good, body: payload},
		{name: "rotation: signed with the old of two keys", keys: [][]byte{oldKey, newKey},
			timestamp: ts(now), signature: manifest.Sign(oldKey, now, payload), body: payload},
		{name: "wrong key", keys: [][]byte{oldKey}, timestamp: ts(now), signature: good, body: payload, want: manifest.ErrBadSignature},
		{name: "key that differs in the last byte", keys: [][]byte{append(append([]byte{}, newKey[:len(newKey)-1]...), 'X')},
			timestamp: ts(now), signature: good, body: payload, want: manifest.ErrBadSignature},
		{name: "no keys", keys: nil, timestamp: ts(now), signature: good, body: payload, want: manifest.ErrBadSignature},
		{name: "body tampered", keys: [][]byte{newKey}, timestamp: ts(now), signature: good,
			body: []byte(strings.Replace(string(payload), "142", "143", 1)), want: manifest.ErrBadSignature},
		{name: "body extended", keys: [][]byte{newKey}, timestamp: ts(now), signature: good,
			body: append(append([]byte{}, payload...), '\n'), want: manifest.ErrBadSignature},
		{name: "body truncated", keys: [][]byte{newKey}, timestamp: ts(now), signature: good,
			body: payload[:len(payload)-1], want: manifest.ErrBadSignature},
		{name: "timestamp tampered", keys: [][]byte{newKey}, timestamp: ts(now.Add(-time.Second)), signature: good,
			body: payload, want: manifest.ErrBadSignature},
		{name: "signature bit flipped", keys: [][]byte{newKey}, timestamp: ts(now), body: payload, want: manifest.ErrBadSignature,
			signature: "sha256=" + flipHex(bareHex)},

		{name: "stale: just past the window", keys: [][]byte{newKey}, timestamp: ts(now.Add(-manifest.MaxClockSkew - time.Second)),
			signature: manifest.Sign(newKey, now.Add(-manifest.MaxClockSkew-time.Second), payload), body: payload, want: manifest.ErrStale},
		{name: "stale: a day old", keys: [][]byte{newKey}, timestamp: ts(now.Add(-24 * time.Hour)),
			signature: manifest.Sign(newKey, now.Add(-24*time.Hour), payload), body: payload, want: manifest.ErrStale},
		{name: "stale: just beyond the future window", keys: [][]byte{newKey}, timestamp: ts(now.Add(manifest.MaxClockSkew + time.Second)),
			signature: manifest.Sign(newKey, now.Add(manifest.MaxClockSkew+time.Second), payload), body: payload, want: manifest.ErrStale},
		{name: "stale: far future", keys: [][]byte{newKey}, timestamp: "999999999999",
			signature: manifest.Sign(newKey, time.Unix(999999999999, 0), payload), body: payload, want: manifest.ErrStale},
		{name: "just inside the past window", keys: [][]byte{newKey}, timestamp: ts(now.Add(-manifest.MaxClockSkew)),
			signature: manifest.Sign(newKey, now.Add(-manifest.MaxClockSkew), payload), body: payload},
		{name: "just inside the future window", keys: [][]byte{newKey}, timestamp: ts(now.Add(manifest.MaxClockSkew)),
			signature: manifest.Sign(newKey, now.Add(manifest.MaxClockSkew), payload), body: payload},

		{name: "missing timestamp", keys: [][]byte{newKey}, signature: good, body: payload, want: manifest.ErrMissingSignature},
		{name: "missing signature", keys: [][]byte{newKey}, timestamp: ts(now), body: payload, want: manifest.ErrMissingSignature},
		{name: "missing both", keys: [][]byte{newKey}, body: payload, want: manifest.ErrMissingSignature},

		{name: "no sha256= prefix", keys: [][]byte{newKey}, timestamp: ts(now), signature: bareHex, body: payload, want: manifest.ErrMalformed},
		{name: "other algorithm prefix", keys: [][]byte{newKey}, timestamp: ts(now), signature: "sha1=" + bareHex, body: payload, want: manifest.ErrMalformed},
		{name: "uppercase prefix", keys: [][]byte{newKey}, timestamp: ts(now), signature: "SHA256=" + bareHex, body: payload, want: manifest.ErrMalformed},
		{name: "prefix only", keys: [][]byte{newKey}, timestamp: ts(now), signature: "sha256=", body: payload, want: manifest.ErrMalformed},
		{name: "bad hex", keys: [][]byte{newKey}, timestamp: ts(now), signature: "sha256=zz" + bareHex[2:], body: payload, want: manifest.ErrMalformed},
		{name: "odd hex length", keys: [][]byte{newKey}, timestamp: ts(now), signature: good[:len(good)-1], body: payload, want: manifest.ErrMalformed},
		{name: "too short", keys: [][]byte{newKey}, timestamp: ts(now), signature: good[:len(good)-2], body: payload, want: manifest.ErrMalformed},
		{name: "too long", keys: [][]byte{newKey}, timestamp: ts(now), signature: good + "00", body: payload, want: manifest.ErrMalformed},
		{name: "two signatures", keys: [][]byte{newKey}, timestamp: ts(now), signature: good + "," + good, body: payload, want: manifest.ErrMalformed},
		{name: "non-numeric timestamp", keys: [][]byte{newKey}, timestamp: "yesterday", signature: good, body: payload, want: manifest.ErrMalformed},
		{name: "RFC 3339 timestamp", keys: [][]byte{newKey}, timestamp: now.Format(time.RFC3339), signature: good, body: payload, want: manifest.ErrMalformed},
		{name: "fractional timestamp", keys: [][]byte{newKey}, timestamp: ts(now) + ".5", signature: good, body: payload, want: manifest.ErrMalformed},
		{name: "timestamp with spaces", keys: [][]byte{newKey}, timestamp: " " + ts(now), signature: good, body: payload, want: manifest.ErrMalformed},
		{name: "zero timestamp", keys: [][]byte{newKey}, timestamp: "0", signature: good, body: payload, want: manifest.ErrMalformed},
		{name: "negative timestamp", keys: [][]byte{newKey}, timestamp: "-" + ts(now), signature: good, body: payload, want: manifest.ErrMalformed},
		{name: "over-long timestamp", keys: [][]byte{newKey}, timestamp: "0000" + ts(now) + "000", signature: good, body: payload, want: manifest.ErrMalformed},
		{name: "timestamp in milliseconds", keys: [][]byte{newKey}, timestamp: strconv.FormatInt(now.UnixMilli(), 10), signature: good, body: payload, want: manifest.ErrMalformed},
		{name: "timestamp beyond int64", keys: [][]byte{newKey}, timestamp: "99999999999999999999", signature: good, body: payload, want: manifest.ErrMalformed},
	}
	sentinels := []error{manifest.ErrMissingSignature, manifest.ErrMalformed, manifest.ErrStale, manifest.ErrBadSignature}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			err := manifest.Verify(tt.keys, tt.timestamp, tt.signature, tt.body, now)
			if tt.want == nil {
				g.Expect(err).NotTo(HaveOccurred())
				return
			}
			g.Expect(err).To(MatchError(tt.want))
			for _, other := range sentinels {
				if other != tt.want {
					g.Expect(errors.Is(err, other)).To(BeFalse(), "%v is also %v", err, other)
				}
			}
		})
	}
}

// flipHex changes the last hex digit of s.
func flipHex(s string) string {
	last := s[len(s)-1]
	repl := byte('0')
	if last == '0' {
		repl = '1'
	}
	return s[:len(s)-1] + string(repl)
}

func FuzzVerify(f *testing.F) {
	payload := []byte(body())
	f.Add(newKey, payload, now.Unix(), int64(0), ts(now), manifest.Sign(newKey, now, payload))
	f.Add(newKey, payload, now.Unix(), int64(301), ts(now), manifest.Sign(oldKey, now, payload))
	f.Add(oldKey, []byte(nil), int64(1), int64(-300), "+1", "sha256=")
	f.Add([]byte{}, []byte("{}"), int64(-5), int64(1<<40), "-5", "sha256="+strings.Repeat("0", 64))
	f.Add(newKey, payload, now.Unix(), int64(0), "0"+ts(now), strings.ToUpper(manifest.Sign(newKey, now, payload)))
	f.Fuzz(func(t *testing.T, key, data []byte, signedAt, skew int64, tsHeader, sigHeader string) {
		// Keep the clock where time arithmetic cannot overflow.
		signedAt %= 1 << 40
		skew %= 1 << 40
		receivedAt := time.Unix(signedAt+skew, 0)

		// Arbitrary headers: accepted only when they are exactly a signature Sign made with
		// key, over data, at a time within MaxClockSkew.
		if err := manifest.Verify([][]byte{key}, tsHeader, sigHeader, data, receivedAt); err == nil {
			secs, perr := strconv.ParseInt(tsHeader, 10, 64)
			if perr != nil || strconv.FormatInt(secs, 10) != tsHeader {
				t.Fatalf("accepted timestamp %q that Sign never writes", tsHeader)
			}
			if !strings.EqualFold(sigHeader, manifest.Sign(key, time.Unix(secs, 0), data)) {
				t.Fatalf("accepted signature %q that Sign did not make", sigHeader)
			}
			if d := receivedAt.Sub(time.Unix(secs, 0)); d > manifest.MaxClockSkew || d < -manifest.MaxClockSkew {
				t.Fatalf("accepted timestamp %d, %s from the clock", secs, d)
			}
		}

		// A genuine signature is accepted exactly when its timestamp is in the window...
		sig := manifest.Sign(key, time.Unix(signedAt, 0), data)
		ts := strconv.FormatInt(signedAt, 10)
		err := manifest.Verify([][]byte{key}, ts, sig, data, receivedAt)
		inWindow := skew >= -int64(manifest.MaxClockSkew/time.Second) && skew <= int64(manifest.MaxClockSkew/time.Second)
		switch {
		case signedAt <= 0 || len(ts) > 12:
			if !errors.Is(err, manifest.ErrMalformed) {
				t.Fatalf("timestamp %s: got %v, want ErrMalformed", ts, err)
			}
		case !inWindow:
			if !errors.Is(err, manifest.ErrStale) {
				t.Fatalf("skew %ds: got %v, want ErrStale", skew, err)
			}
		case err != nil:
			t.Fatalf("genuine signature rejected: %v", err)
		default:
			// ...and fails for any other body or key.
			if err := manifest.Verify([][]byte{key}, ts, sig, append(append([]byte{}, data...), 'x'), receivedAt); !errors.Is(err, manifest.ErrBadSignature) {
				t.Fatalf("extended body: got %v, want ErrBadSignature", err)
			}
			if err := manifest.Verify([][]byte{append(append([]byte{}, key...), 'x')}, ts, sig, data, receivedAt); !errors.Is(err, manifest.ErrBadSignature) {
				t.Fatalf("other key: got %v, want ErrBadSignature", err)
			}
		}
	})
}

func BenchmarkVerify(b *testing.B) {
	payload := []byte(body())
	keys := [][]byte{oldKey, newKey}
	sig := manifest.Sign(newKey, now, payload)
	stamp := ts(now)
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		if err := manifest.Verify(keys, stamp, sig, payload, now); err != nil {
			b.Fatal(err)
		}
	}
}
