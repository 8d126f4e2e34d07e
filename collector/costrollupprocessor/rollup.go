package costrollupprocessor // import "github.com/otel-costs/otel-costs/collector/costrollupprocessor"

import (
	"math"
	"math/big"
	"strconv"
	"strings"

	"go.opentelemetry.io/collector/pdata/pcommon"
)

// The rollup: the same figures as otel_costs._rollup.rollup_columns over every span of a trace,
// iterative (a 100,000-deep chain or a 200,000-wide fan-out is fine), O(n), on int64 nano-USD
// with overflow checked (an overflowing subtree saturates at 2^63-1 and is flagged).

const (
	kindNone = iota
	kindRemoteParent
	kindOrphan
	kindCycle
	kindDuplicate
)

type node struct {
	id, parent       pcommon.SpanID
	hasParent        bool
	remote           bool
	direct           int64
	billable         bool
	unpriced         bool
	childrenNanos    int64
	totalNanos       int64
	billableSubtree  bool
	unpricedSubtree  int64
	overflow         bool
	rootKind         int
	parentIdx        int32
	firstChild, next int32 // children as a linked list: no slice per node
}

func addChecked(a, b int64) (int64, bool) {
	s := a + b
	if (s > a) == (b > 0) {
		return s, false
	}
	if b == 0 {
		return a, false
	}
	return math.MaxInt64, true
}

// rollupNodes fills the rollup fields of nodes (sc: reusable buffers, may be nil).
func rollupNodes(nodes []node, sc *scratch) {
	n := len(nodes)
	if sc == nil {
		sc = &scratch{}
	}
	if sc.index == nil {
		sc.index = make(map[pcommon.SpanID]int32, n)
	}
	index := sc.index
	clear(index)
	for i := range nodes {
		nodes[i].parentIdx = -1
		nodes[i].firstChild = -1
		nodes[i].next = -1
		if _, seen := index[nodes[i].id]; seen {
			nodes[i].rootKind = kindDuplicate
		} else {
			index[nodes[i].id] = int32(i)
		}
	}
	roots := sc.roots[:0]
	for i := range nodes {
		nd := &nodes[i]
		if !nd.hasParent || nd.rootKind == kindDuplicate {
			roots = append(roots, int32(i))
			continue
		}
		p, ok := index[nd.parent]
		switch {
		case !ok:
			if nd.remote {
				nd.rootKind = kindRemoteParent
			} else {
				nd.rootKind = kindOrphan
			}
			roots = append(roots, int32(i))
		case p == int32(i):
			nd.rootKind = kindCycle
			roots = append(roots, int32(i))
		default:
			nd.parentIdx = p
			nd.next = nodes[p].firstChild
			nodes[p].firstChild = int32(i)
		}
	}
	done := growBools(sc.done, n)
	for i := range nodes {
		nodes[i].billableSubtree = nodes[i].billable
		if nodes[i].unpriced {
			nodes[i].unpricedSubtree = 1
		}
	}
	order := sc.order[:0]
	stack := sc.stack[:0]
	walk := func(start []int32) {
		order = order[:0]
		stack = append(stack[:0], start...)
		for len(stack) > 0 {
			i := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			order = append(order, i)
			for c := nodes[i].firstChild; c >= 0; c = nodes[c].next {
				stack = append(stack, c)
			}
		}
		for k := len(order) - 1; k >= 0; k-- {
			i := order[k]
			nd := &nodes[i]
			total, over := addChecked(nd.direct, nd.childrenNanos)
			nd.totalNanos = total
			nd.overflow = nd.overflow || over
			done[i] = true
			if p := nd.parentIdx; p >= 0 {
				pn := &nodes[p]
				var o bool
				pn.childrenNanos, o = addChecked(pn.childrenNanos, total)
				pn.overflow = pn.overflow || o || nd.overflow
				pn.billableSubtree = pn.billableSubtree || nd.billableSubtree
				pn.unpricedSubtree += nd.unpricedSubtree
			}
		}
	}
	walk(roots)
	if len(roots) < n {
		for i := 0; i < n; i++ {
			if done[i] {
				continue
			}
			// Follow parents until a node repeats: the loop is cut there.
			seen := map[int32]bool{}
			j := int32(i)
			for !seen[j] {
				seen[j] = true
				j = nodes[j].parentIdx
			}
			p := nodes[j].parentIdx
			// Unlink j from p's children.
			if nodes[p].firstChild == j {
				nodes[p].firstChild = nodes[j].next
			} else {
				for c := nodes[p].firstChild; c >= 0; c = nodes[c].next {
					if nodes[c].next == j {
						nodes[c].next = nodes[j].next
						break
					}
				}
			}
			nodes[j].next = -1
			nodes[j].parentIdx = -1
			nodes[j].rootKind = kindCycle
			walk([]int32{j})
		}
	}
	sc.roots, sc.done, sc.order, sc.stack = roots, done, order, stack
}

func growBools(b []bool, n int) []bool {
	if cap(b) < n {
		return make([]bool, n)
	}
	b = b[:n]
	clear(b)
	return b
}

// nanosToUSD is the double nearest nanos/1e9 (as Python's int / int).
func nanosToUSD(nanos int64) float64 {
	if nanos > -(1<<53) && nanos < 1<<53 {
		return float64(nanos) / 1e9
	}
	f, _ := new(big.Rat).SetFrac(big.NewInt(nanos), big.NewInt(1_000_000_000)).Float64()
	return f
}

// usdWireToNanos reads a USD double back to nano-USD (Python: to_nanos(Decimal(repr(value)))).
func usdWireToNanos(v pcommon.Value) (int64, bool) {
	var r *big.Rat
	switch v.Type() {
	case pcommon.ValueTypeInt:
		if v.Int() < 0 {
			return 0, false
		}
		r = new(big.Rat).SetInt64(v.Int())
	case pcommon.ValueTypeDouble:
		d := v.Double()
		if math.IsNaN(d) || math.IsInf(d, 0) || d < 0 {
			return 0, false
		}
		var ok bool
		r, ok = new(big.Rat).SetString(strconv.FormatFloat(d, 'g', -1, 64))
		if !ok {
			return 0, false
		}
	default:
		return 0, false
	}
	n := roundHalfEven(r.Mul(r, nanosPerUSD))
	if !n.IsInt64() {
		return 0, false
	}
	return n.Int64(), true
}

// Attribute keys.
const (
	attrCostDirect        = "cost.direct"
	attrCostDirectNanos   = "cost.direct_nanos"
	attrCostStatus        = "cost.status"
	attrCostStatusReason  = "cost.status_reason"
	attrCostCurrency      = "cost.currency"
	attrCostChildren      = "cost.children"
	attrCostTotal         = "cost.total"
	attrCostChildrenNanos = "cost.children_nanos"
	attrCostTotalNanos    = "cost.total_nanos"
	attrScope             = "cost.rollup.scope"
	attrUnpriced          = "cost.rollup.unpriced"
	attrRemoteParent      = "cost.rollup.remote_parent"
	attrOrphan            = "cost.rollup.orphan"
	attrPartial           = "cost.rollup.partial"
	attrPartialReason     = "cost.rollup.partial_reason"
)

// replacedKeys: what an earlier rollup wrote; the trace-wide rollup replaces them.
var replacedKeys = map[string]bool{
	attrCostChildren: true, attrCostTotal: true, attrCostChildrenNanos: true, attrCostTotalNanos: true,
	attrScope: true, attrUnpriced: true, attrRemoteParent: true, attrOrphan: true, attrPartial: true, attrPartialReason: true,
}

var billableStatus = map[string]bool{"priced": true, "unpriced": true, "invalid_usage": true, "partial": true}
var incompleteStatus = map[string]bool{"unpriced": true, "invalid_usage": true, "partial": true}

// ownCost is otel_costs._rollup.own_cost: (direct nanos, billable, unpriced).
func ownCost(status pcommon.Value, hasStatus bool, nanosV pcommon.Value, hasNanos bool, usdV pcommon.Value, hasUSD bool) (int64, bool, bool) {
	st := ""
	if hasStatus && status.Type() == pcommon.ValueTypeStr {
		st = status.Str()
	}
	var nanos int64
	valid := false
	present := false
	if hasNanos {
		present = true
		if nanosV.Type() == pcommon.ValueTypeInt && nanosV.Int() >= 0 {
			nanos, valid = nanosV.Int(), true
		}
	} else if hasUSD {
		present = true
		nanos, valid = usdWireToNanos(usdV)
		if !valid {
			nanos = 0
		}
	}
	billable := billableStatus[st] || present
	unpriced := incompleteStatus[st] || (present && !valid)
	return nanos, billable, unpriced
}

func isCostKey(k string) bool { return strings.HasPrefix(k, "cost.") }
