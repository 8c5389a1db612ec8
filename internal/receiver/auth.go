package receiver

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
)

// API key authentication of EventBridge API destinations, which cannot sign bodies.
const (
	// APIKeyHeader carries the key of an API_KEY connection.
	APIKeyHeader = "X-Autodeploy-Api-Key"
	// BasicAuthUser is the user name of a BASIC connection; the key is the password.
	BasicAuthUser = "autodeploy"
	// maxAPIKey bounds a presented key.
	maxAPIKey = 1024
)

// Errors from ParseAPIKey. Like the signature errors they say nothing about which keys exist.
var (
	ErrMissingAPIKey   = errors.New("missing API key (" + APIKeyHeader + " header or basic auth)")
	ErrMalformedAPIKey = errors.New("malformed API key or basic auth")
	ErrAPIKeyMismatch  = errors.New("API key does not match")
	// ErrRepeatedAPIKey: more than one X-Autodeploy-Api-Key or Authorization header; which
	// one counts would be a guess, so none does.
	ErrRepeatedAPIKey = errors.New("repeated " + APIKeyHeader + " or Authorization header")
	// ErrRepeatedSignature: more than one signature or timestamp header.
	ErrRepeatedSignature = errors.New("repeated signature or timestamp header")
)

// AuthFailedMessage is the one answer (401) to every request that fails authentication,
// whatever the reason: a missing, malformed, repeated, stale or wrong signature or key, or a
// namespace without keys. The reason goes to the log and the auth failure metric only.
const AuthFailedMessage = "authentication failed: this path needs a valid signature (manifests) or API key (events); the receiver's log has the reason"

// repeated reports whether header name appears more than once in h.
func repeated(h http.Header, name string) bool { return len(h.Values(name)) > 1 }

// ParseAPIKey returns the key presented in the X-Autodeploy-Api-Key header value, or else in
// the Authorization header value as HTTP Basic credentials with user "autodeploy".
func ParseAPIKey(apiKeyHeader, authorization string) ([]byte, error) {
	if apiKeyHeader != "" {
		key := strings.TrimSpace(apiKeyHeader)
		if key == "" || len(key) > maxAPIKey {
			return nil, ErrMalformedAPIKey
		}
		return []byte(key), nil
	}
	if authorization == "" {
		return nil, ErrMissingAPIKey
	}
	scheme, creds, ok := strings.Cut(authorization, " ")
	if !ok || !strings.EqualFold(scheme, "Basic") || len(creds) > 2*maxAPIKey {
		return nil, ErrMalformedAPIKey
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(creds))
	if err != nil {
		return nil, ErrMalformedAPIKey
	}
	user, password, ok := strings.Cut(string(raw), ":")
	if !ok || user != BasicAuthUser || password == "" || len(password) > maxAPIKey {
		return nil, ErrMalformedAPIKey
	}
	return []byte(password), nil
}

// dummyKeys pad every key set to at least two keys, so that checking a request costs the same
// whether its tenant has no key, one or two (timing says nothing about which tenants exist).
// They are random and never leave the process, so they match nothing.
var dummyKeys = func() [][]byte {
	keys := make([][]byte, 2)
	for i := range keys {
		keys[i] = make([]byte, 32)
		_, _ = rand.Read(keys[i])
	}
	return keys
}()

func padKeys(keys [][]byte) [][]byte {
	if len(keys) >= len(dummyKeys) {
		return keys
	}
	out := append([][]byte(nil), keys...)
	return append(out, dummyKeys[len(keys):]...)
}

// MatchAPIKey reports whether given equals one of keys, in time independent of where they
// differ and of which key matched (every key is compared; lengths are hidden by hashing).
func MatchAPIKey(keys [][]byte, given []byte) bool {
	g := sha256.Sum256(given)
	match := 0
	real := len(keys)
	for i, k := range padKeys(keys) {
		h := sha256.Sum256(k)
		eq := subtle.ConstantTimeCompare(h[:], g[:])
		if i < real {
			match |= eq
		}
	}
	return match == 1
}
