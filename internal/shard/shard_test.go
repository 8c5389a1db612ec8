package shard

import (
	"fmt"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/labels"
)

// The shard of a namespace is FNV-1a of its name: every replica, of every version, must
// compute the same one, or two replicas would reconcile one Environment.
func TestOfIsStableAndSpreads(t *testing.T) {
	for _, c := range []struct {
		ns    string
		count int
		want  int
	}{
		{"shop", 1, 0},
		{"shop", 0, 0},
		{"", 4, 0x811c9dc5 % 4}, // FNV-1a's offset basis: the hash of nothing
		{"a", 2, int(uint32(0xe40c292c) % 2)},
		{"default", 7, int(fnv1a("default") % 7)},
		{"team-payments-prod", 16, int(fnv1a("team-payments-prod") % 16)},
	} {
		if got := Of(c.ns, c.count); got != c.want {
			t.Errorf("Of(%q, %d) = %d, want %d", c.ns, c.count, got, c.want)
		}
	}
	// 1,000 namespaces over 4 shards: none gets less than half or more than twice its share.
	counts := make([]int, 4)
	for i := range 1000 {
		counts[Of(fmt.Sprintf("team-%d", i), 4)]++
	}
	for i, n := range counts {
		if n < 125 || n > 500 {
			t.Errorf("shard %d holds %d of 1000 namespaces: %v", i, n, counts)
		}
	}
}

func TestLabelValuesRoundTripAndBadOnesAreNamed(t *testing.T) {
	for _, a := range []Assignment{{0, 2}, {1, 2}, {9, 10}} {
		got, err := Parse(a.String())
		if err != nil || got != a {
			t.Errorf("Parse(%q) = %v, %v", a.String(), got, err)
		}
	}
	for _, bad := range []string{"", "1", "2-of-2", "-1-of-2", "0-of-0", "a-of-2", "0-of-b", "0of2"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted it", bad)
		} else if want := fmt.Sprintf("%q", bad); !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q): the error %q does not name the value", bad, err)
		}
	}
}

func TestSelectorsPartitionTheLabels(t *testing.T) {
	set := func(v string) labels.Set {
		if v == "" {
			return labels.Set{"team": "shop"}
		}
		return labels.Set{Label: v}
	}
	for _, c := range []struct {
		value      string
		unassigned bool
		of0, of1   bool
	}{
		{"", true, false, false},        // new Environment
		{"0-of-2", false, true, false},  // shard 0
		{"1-of-2", false, false, true},  // shard 1
		{"1-of-4", true, false, false},  // labelled for another count
		{"garbage", true, false, false}, // written by hand
		{"0-of-20", true, false, false}, // a prefix of a valid value is not one
		{"10-of-2", true, false, false}, // out of range
		{"0-of-2 ", true, false, false}, // not equal
		{"00-of-2", true, false, false}, // not how Value writes it
		{"1-of-2x", true, false, false}, // trailing text
		{"-of-2", true, false, false},   // no index
		{"2-of-2", true, false, false},  // index = count
		{"1-of-02", true, false, false}, // not how Value writes it
		{"0-Of-2", true, false, false},  // case matters
		{"0_of_2", true, false, false},  // separator matters
		{"0-of-2-of-2", true, false, false},
	} {
		l := set(c.value)
		if got := Unassigned(2).Matches(l); got != c.unassigned {
			t.Errorf("%q: Unassigned(2) matches = %v, want %v", c.value, got, c.unassigned)
		}
		if got := (Assignment{0, 2}).Selector().Matches(l); got != c.of0 {
			t.Errorf("%q: shard 0-of-2 matches = %v, want %v", c.value, got, c.of0)
		}
		if got := (Assignment{1, 2}).Selector().Matches(l); got != c.of1 {
			t.Errorf("%q: shard 1-of-2 matches = %v, want %v", c.value, got, c.of1)
		}
	}
}

func TestOwnsWithoutShardingIsEverything(t *testing.T) {
	if !(Assignment{}).Owns("any") || (Assignment{}).Sharded() {
		t.Error("the zero Assignment must own every namespace and not be sharded")
	}
	a := Assignment{Index: Of("shop", 3), Count: 3}
	if !a.Owns("shop") {
		t.Error("a shard must own the namespaces that hash to it")
	}
	other := Assignment{Index: (a.Index + 1) % 3, Count: 3}
	if other.Owns("shop") {
		t.Error("a shard must not own another shard's namespace")
	}
	if got := LeaseName("autodeploy", Assignment{1, 3}); got != "autodeploy-1-of-3" {
		t.Errorf("LeaseName = %q", got)
	}
}

// fnv1a is FNV-1a (32 bits) as its authors define it, written out, to hold Of to it.
func fnv1a(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}
