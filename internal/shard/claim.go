package shard

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
)

// Claimer takes one free shard Lease for a replica. Once it has one, the replica's leader
// election keeps it (client-go's elector renews a Lease its identity already holds), so a
// shard has one holder at a time as a single-leader deployment has one leader.
type Claimer struct {
	// Leases reads and writes the shard Leases.
	Leases coordinationv1client.LeasesGetter
	// Namespace holds the shard Leases (the leader election namespace).
	Namespace string
	// Prefix names the Leases: Prefix-<index>-of-<count> (LeaseName).
	Prefix string
	// Identity is the replica's leader election identity.
	Identity string
	// Count is the number of shards.
	Count int
	// LeaseDuration is how long a Lease must stay unrenewed before it is taken over, as the
	// leader election's --leader-elect-lease-duration.
	LeaseDuration time.Duration
	// RetryPeriod spaces the passes over the shards while every one is held.
	RetryPeriod time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	Log logr.Logger

	// seen is each Lease as last read, and when this replica first read that version. A
	// Lease is taken over only when its version has not changed for LeaseDuration on this
	// replica's clock, never by comparing another host's renewTime with it (as client-go's
	// leader election judges expiry; clocks differ).
	seen map[string]observation
}

type observation struct {
	resourceVersion string
	since           time.Time
}

// Claim returns the shard whose Lease it took for Identity: the lowest-numbered one that is
// missing, released, already held by Identity, or not renewed for LeaseDuration. While every
// shard is held it passes over them again every RetryPeriod (the replica is a standby) until
// one frees up or ctx ends.
func (c *Claimer) Claim(ctx context.Context) (Assignment, error) {
	if c.Count < 2 {
		return Assignment{}, fmt.Errorf("sharding needs at least 2 shards, not %d", c.Count)
	}
	if c.Identity == "" || c.LeaseDuration <= 0 || c.RetryPeriod <= 0 {
		return Assignment{}, errors.New("shard.Claimer needs Identity, LeaseDuration and RetryPeriod")
	}
	if c.seen == nil {
		c.seen = map[string]observation{}
	}
	waiting := false
	for {
		for i := 0; i < c.Count; i++ {
			a := Assignment{Index: i, Count: c.Count}
			ok, err := c.try(ctx, a)
			if err != nil {
				if ctx.Err() != nil {
					return Assignment{}, ctx.Err()
				}
				c.Log.Error(err, "Reading or taking a shard Lease failed", "lease", LeaseName(c.Prefix, a))
				continue
			}
			if ok {
				c.Log.Info("Claimed a shard", "shard", a.String(), "lease", LeaseName(c.Prefix, a))
				return a, nil
			}
		}
		if !waiting {
			c.Log.Info("Every shard is held: waiting as a standby", "shards", c.Count)
			waiting = true
		}
		t := time.NewTimer(c.RetryPeriod)
		select {
		case <-ctx.Done():
			t.Stop()
			return Assignment{}, ctx.Err()
		case <-t.C:
		}
	}
}

// try takes shard a's Lease if it is free; false when another replica holds it or won it
// first.
func (c *Claimer) try(ctx context.Context, a Assignment) (bool, error) {
	leases := c.Leases.Leases(c.Namespace)
	name := LeaseName(c.Prefix, a)
	now := c.now()
	stamp := metav1.NewMicroTime(now)
	seconds := int32(max(c.LeaseDuration/time.Second, 1))
	l, err := leases.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: c.Namespace},
			Spec: coordinationv1.LeaseSpec{
				HolderIdentity:       &c.Identity,
				LeaseDurationSeconds: &seconds,
				AcquireTime:          &stamp,
				RenewTime:            &stamp,
			},
		}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return false, nil
		}
		return err == nil, err
	}
	if err != nil {
		return false, err
	}
	holder := ""
	if l.Spec.HolderIdentity != nil {
		holder = *l.Spec.HolderIdentity
	}
	if holder != "" && holder != c.Identity && !c.expired(name, l.ResourceVersion, now) {
		return false, nil
	}
	if holder != c.Identity {
		transitions := int32(0)
		if l.Spec.LeaseTransitions != nil {
			transitions = *l.Spec.LeaseTransitions
		}
		transitions++
		l.Spec.LeaseTransitions = &transitions
		l.Spec.AcquireTime = &stamp
	}
	l.Spec.HolderIdentity = &c.Identity
	l.Spec.LeaseDurationSeconds = &seconds
	l.Spec.RenewTime = &stamp
	if _, err := leases.Update(ctx, l, metav1.UpdateOptions{}); err != nil {
		if apierrors.IsConflict(err) {
			return false, nil // another replica took or renewed it first
		}
		return false, err
	}
	return true, nil
}

// expired reports whether the Lease has stayed at resourceVersion for LeaseDuration since
// this replica first read that version.
func (c *Claimer) expired(name, resourceVersion string, now time.Time) bool {
	o, ok := c.seen[name]
	if !ok || o.resourceVersion != resourceVersion {
		c.seen[name] = observation{resourceVersion: resourceVersion, since: now}
		return false
	}
	return now.Sub(o.since) >= c.LeaseDuration
}

func (c *Claimer) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}
