package receiver

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The tenant key Secret: one per namespace, read by name only.
const (
	// TenantSecretName is the Secret in a tenant namespace holding that namespace's keys.
	TenantSecretName = "autodeploy-receiver"
	// Data keys of the Secret. The previous* keys stay valid during a rotation.
	SecretManifestKey            = "manifestKey"
	SecretPreviousManifestKey    = "previousManifestKey"
	SecretEventBridgeKey         = "eventBridgeKey"
	SecretPreviousEventBridgeKey = "previousEventBridgeKey"
	// DefaultTenantKeyTTL is how long a namespace's keys (or their absence) are cached.
	DefaultTenantKeyTTL = 10 * time.Second
)

// The receiver reads exactly one Secret name per namespace; config/rbac/role.yaml limits the
// permission to that name (resourceNames).
// +kubebuilder:rbac:groups="",resources=secrets,resourceNames=autodeploy-receiver,verbs=get

// TenantKeys are the keys valid for one namespace.
type TenantKeys struct {
	// Manifest verifies signed manifests; EventBridge authenticates API destinations.
	Manifest, EventBridge [][]byte
}

// TenantKeySource returns the keys of a namespace. A namespace without keys (no namespace, no
// Secret) is not an error: it has no keys. An error means the keys could not be read now.
type TenantKeySource interface {
	TenantKeys(ctx context.Context, namespace string) (TenantKeys, error)
}

// ErrLookupLimited is returned when too many uncached key lookups were made: the request is
// answered 429 instead of loading the API server.
var ErrLookupLimited = errors.New("too many key lookups")

// SecretKeys reads TenantSecretName in each namespace with an uncached reader (so that the
// manager needs no list or watch permission on Secrets), caching the keys, and their absence,
// for TTL.
type SecretKeys struct {
	// Reader reads the Secret from the API server (the manager's API reader).
	Reader client.Reader
	// TTL is how long keys are cached: DefaultTenantKeyTTL when zero; no caching when negative.
	TTL time.Duration
	// Lookups limits API reads on cache misses, server-wide; unlimited when nil.
	Lookups *rate.Limiter
	Log     logr.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time

	mu      sync.Mutex
	entries map[string]keysEntry
}

type keysEntry struct {
	keys    TenantKeys
	expires time.Time
}

// maxCachedTenants bounds the cache; probes of random namespace names cannot grow it further.
const maxCachedTenants = 4096

// TenantKeys implements TenantKeySource.
func (s *SecretKeys) TenantKeys(ctx context.Context, namespace string) (TenantKeys, error) {
	if len(validation.IsDNS1123Label(namespace)) > 0 {
		return TenantKeys{}, nil
	}
	now := time.Now()
	if s.Now != nil {
		now = s.Now()
	}
	ttl := s.TTL
	if ttl == 0 {
		ttl = DefaultTenantKeyTTL
	}
	if ttl > 0 {
		s.mu.Lock()
		e, ok := s.entries[namespace]
		s.mu.Unlock()
		if ok && now.Before(e.expires) {
			return e.keys, nil
		}
	}
	if s.Lookups != nil && !s.Lookups.Allow() {
		return TenantKeys{}, ErrLookupLimited
	}
	keys, err := s.read(ctx, namespace)
	if err != nil {
		return TenantKeys{}, err
	}
	if ttl > 0 {
		s.mu.Lock()
		if s.entries == nil {
			s.entries = map[string]keysEntry{}
		}
		if len(s.entries) >= maxCachedTenants {
			for ns, e := range s.entries {
				if !now.Before(e.expires) || len(s.entries) >= maxCachedTenants {
					delete(s.entries, ns)
				}
			}
		}
		s.entries[namespace] = keysEntry{keys: keys, expires: now.Add(ttl)}
		s.mu.Unlock()
	}
	return keys, nil
}

func (s *SecretKeys) read(ctx context.Context, namespace string) (TenantKeys, error) {
	secret := &corev1.Secret{}
	err := s.Reader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: TenantSecretName}, secret)
	switch {
	case apierrors.IsNotFound(err):
		return TenantKeys{}, nil
	case apierrors.IsForbidden(err):
		s.Log.Error(err, "Reading a tenant key Secret is forbidden: check the manager's RBAC", "namespace", namespace)
		return TenantKeys{}, nil
	case err != nil:
		return TenantKeys{}, err
	}
	pick := func(names ...string) [][]byte {
		var keys [][]byte
		for _, name := range names {
			v := bytes.TrimSpace(secret.Data[name])
			switch {
			case len(v) == 0:
			case len(v) < MinKeyBytes || bytes.ContainsAny(v, "\r\n"):
				// The key itself is never logged.
				s.Log.Info("Ignoring a tenant key: it must be one line of at least 16 bytes", "namespace", namespace, "secret", TenantSecretName, "dataKey", name)
			default:
				keys = append(keys, v)
			}
		}
		return keys
	}
	return TenantKeys{
		Manifest:    pick(SecretManifestKey, SecretPreviousManifestKey),
		EventBridge: pick(SecretEventBridgeKey, SecretPreviousEventBridgeKey),
	}, nil
}
