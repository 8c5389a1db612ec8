package manifest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Header names carrying the signature.
const (
	TimestampHeader = "X-Autodeploy-Timestamp"
	SignatureHeader = "X-Autodeploy-Signature"
	signaturePrefix = "sha256="
)

// MaxClockSkew is how far a signed timestamp may be from the receiver's clock, either way.
const MaxClockSkew = 5 * time.Minute

// Errors from Verify. They are deliberately terse: a caller that fails authentication learns
// nothing else.
var (
	ErrMissingSignature = errors.New("missing signature headers")
	ErrMalformed        = errors.New("malformed signature headers")
	ErrStale            = errors.New("signature timestamp outside the allowed window")
	ErrBadSignature     = errors.New("signature does not match")
)

// Sign returns the signature header value for body signed at ts with key.
func Sign(key []byte, ts time.Time, body []byte) string {
	return signaturePrefix + hex.EncodeToString(mac(key, strconv.FormatInt(ts.Unix(), 10), body))
}

func mac(key []byte, ts string, body []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(ts))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}

// Verify checks the timestamp and signature header values against body with any of keys.
// It compares in constant time.
func Verify(keys [][]byte, timestamp, signature string, body []byte, now time.Time) error {
	if timestamp == "" || signature == "" {
		return ErrMissingSignature
	}
	secs, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil || secs <= 0 || len(timestamp) > 12 {
		return ErrMalformed
	}
	if !strings.HasPrefix(signature, signaturePrefix) {
		return ErrMalformed
	}
	given, err := hex.DecodeString(signature[len(signaturePrefix):])
	if err != nil || len(given) != sha256.Size {
		return ErrMalformed
	}
	skew := now.Sub(time.Unix(secs, 0))
	if skew > MaxClockSkew || skew < -MaxClockSkew {
		return fmt.Errorf("%w (%s from the receiver's clock)", ErrStale, skew.Round(time.Second))
	}
	ok := false
	for _, k := range keys {
		// Every key is tried so that timing does not tell which key matched.
		if hmac.Equal(mac(k, timestamp, body), given) {
			ok = true
		}
	}
	if !ok {
		return ErrBadSignature
	}
	return nil
}
