// Package shard splits the Environments of a cluster among manager replicas by namespace.
//
// With N shards, an Environment belongs to shard Of(namespace, N). A replica first claims one
// shard's Lease (Claimer), then reconciles the Environments labelled with that shard
// (Selector) from a cache that holds nothing else, so that each replica's memory is about
// 1/N of the fleet's. Every shard holder also labels the new Environments of its own
// namespaces (Labeler): an Environment is reconciled once it carries the label.
//
// Sharding by namespace keeps together what the reconciler compares: a promotion's upstream
// and a Notification's Environments are always in the Environment's own namespace.
package shard

import (
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
)

// Label is the label that assigns an Environment to a shard: "<index>-of-<count>". The
// count is part of the value, so that an Environment labelled for another shard count is
// seen as unassigned and labelled again.
const Label = "autodeploy.dev/shard"

// Assignment is one shard among Count. The zero value means no sharding.
type Assignment struct {
	Index, Count int
}

// Sharded reports whether a is one shard of several.
func (a Assignment) Sharded() bool { return a.Count > 1 }

// String is the label value of a: "<index>-of-<count>".
func (a Assignment) String() string { return Value(a.Index, a.Count) }

// Owns reports whether namespace belongs to a (every namespace when not sharded).
func (a Assignment) Owns(namespace string) bool {
	return !a.Sharded() || Of(namespace, a.Count) == a.Index
}

// Of is the shard of namespace among count: FNV-1a of its name, modulo count. It depends on
// the name only, so every replica computes the same shard without asking anyone.
func Of(namespace string, count int) int {
	if count <= 1 {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(namespace))
	return int(h.Sum32() % uint32(count))
}

// Value is the label value of shard index among count.
func Value(index, count int) string {
	return strconv.Itoa(index) + "-of-" + strconv.Itoa(count)
}

// Parse reads a label value written by Value.
func Parse(value string) (Assignment, error) {
	i, n, ok := strings.Cut(value, "-of-")
	if ok {
		index, err1 := strconv.Atoi(i)
		count, err2 := strconv.Atoi(n)
		if err1 == nil && err2 == nil && count >= 1 && index >= 0 && index < count {
			return Assignment{Index: index, Count: count}, nil
		}
	}
	return Assignment{}, fmt.Errorf("shard label %q is not <index>-of-<count> with 0 <= index < count", value)
}

// Selector selects the Environments of a.
func (a Assignment) Selector() labels.Selector {
	req, err := labels.NewRequirement(Label, selection.Equals, []string{a.String()})
	if err != nil {
		panic(err) // a.String() is always a valid label value
	}
	return labels.NewSelector().Add(*req)
}

// Unassigned selects the Environments that carry no valid label for count shards: new ones,
// and those labelled for another count.
func Unassigned(count int) labels.Selector {
	values := make([]string, count)
	for i := range values {
		values[i] = Value(i, count)
	}
	req, err := labels.NewRequirement(Label, selection.NotIn, values)
	if err != nil {
		panic(err)
	}
	return labels.NewSelector().Add(*req)
}

// LeaseName is the name of the Lease that shard a's holder keeps: prefix-<index>-of-<count>.
func LeaseName(prefix string, a Assignment) string {
	return prefix + "-" + a.String()
}
