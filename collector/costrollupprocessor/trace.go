package costrollupprocessor // import "github.com/otel-costs/otel-costs/collector/costrollupprocessor"

import (
	"math"
	"math/bits"
	"net/url"
	"regexp"
	"sync"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// Flags a whole released trace can carry (every span gets cost.rollup.partial with the reason).
const (
	reasonLate       = "late"
	reasonBufferFull = "buffer_full"
	reasonCycle      = "cycle"
	reasonDuplicate  = "duplicate"
	reasonOverflow   = "overflow"
	reasonMissing    = "missing_child"
)

// traceOptions say how one trace is rolled up.
type traceOptions struct {
	book          *PriceBook
	partialReason string // late / buffer_full: every span is flagged
	missing       map[int]bool
}

// counters of one processed trace, for the self-metrics.
type traceStats struct {
	spans, priced, unpriced, invalid, duplicate, flagged int
}

const duplicateReason = "this response was already counted on another span of the trace (two instrumentations " +
	"traced one call); instrument each call once"

// collectSpans lists the spans of td in order.
func collectSpans(td ptrace.Traces) []ptrace.Span {
	n := td.SpanCount()
	spans := make([]ptrace.Span, 0, n)
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		sss := rss.At(i).ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			ss := sss.At(j).Spans()
			for k := 0; k < ss.Len(); k++ {
				spans = append(spans, ss.At(k))
			}
		}
	}
	return spans
}

// spanCostView is what one pass over a span's attributes finds (the last value of a repeated key).
type spanCostView struct {
	hasCost   bool // some cost.* key
	hasDrop   bool // some key an earlier rollup wrote
	dropMask  uint16
	dropDup   bool
	hasCurr   bool
	status    pcommon.Value
	hasStatus bool
	nanos     pcommon.Value
	hasNanos  bool
	usd       pcommon.Value
	hasUSD    bool
	hasUsage  bool // some usage-related key
	respID    pcommon.Value
	hasRespID bool
	toPrice   bool  // usage-related keys and no cost.status: priceSpan reads them from found
	foundAt   int32 // its found in the scratch (when toPrice)
}

// Bits of the rollup keys (replacedKeys) in a span, for replacing them in place.
const (
	bitChildren uint16 = 1 << iota
	bitTotal
	bitChildrenNanos
	bitTotalNanos
	bitScope
	bitUnpriced
	bitRemoteParent
	bitOrphan
	bitPartial
	bitPartialReason
)

var replacedBit = map[string]uint16{
	attrCostChildren: bitChildren, attrCostTotal: bitTotal, attrCostChildrenNanos: bitChildrenNanos,
	attrCostTotalNanos: bitTotalNanos, attrScope: bitScope, attrUnpriced: bitUnpriced,
	attrRemoteParent: bitRemoteParent, attrOrphan: bitOrphan, attrPartial: bitPartial, attrPartialReason: bitPartialReason,
}

// set*: write k unless it already holds exactly that value (no allocation then).
func setDouble(m pcommon.Map, k string, v float64) {
	if cur, ok := m.Get(k); ok && cur.Type() == pcommon.ValueTypeDouble && math.Float64bits(cur.Double()) == math.Float64bits(v) {
		return
	}
	m.PutDouble(k, v)
}

func setInt(m pcommon.Map, k string, v int64) {
	if cur, ok := m.Get(k); ok && cur.Type() == pcommon.ValueTypeInt && cur.Int() == v {
		return
	}
	m.PutInt(k, v)
}

func setStr(m pcommon.Map, k, v string) {
	if cur, ok := m.Get(k); ok && cur.Type() == pcommon.ValueTypeStr && cur.Str() == v {
		return
	}
	m.PutStr(k, v)
}

func setBool(m pcommon.Map, k string) {
	if cur, ok := m.Get(k); ok && cur.Type() == pcommon.ValueTypeBool && cur.Bool() {
		return
	}
	m.PutBool(k, true)
}

// interesting[c]: some key read here starts with byte c (most attributes are skipped on it).
// Filled in usage.go's init, after readKeys.
var interesting [256]bool

// viewSpan reads a span's attributes in one pass; the usage-related ones go into f (nil: not
// kept), which holds them for pricing when the span turns out to need it (toPrice).
func viewSpan(attrs pcommon.Map, f *found) spanCostView {
	var v spanCostView
	if f != nil {
		f.has = 0
	}
	attrs.Range(func(k string, val pcommon.Value) bool {
		if k == "" || !interesting[k[0]] {
			return true
		}
		if isCostKey(k) {
			v.hasCost = true
			switch k {
			case attrCostStatus:
				v.status, v.hasStatus = val, true
			case attrCostDirectNanos:
				v.nanos, v.hasNanos = val, true
			case attrCostDirect:
				v.usd, v.hasUSD = val, true
			case attrCostCurrency:
				v.hasCurr = true
			default:
				if b := replacedBit[k]; b != 0 {
					v.hasDrop = true
					if v.dropMask&b != 0 {
						v.dropDup = true // a rollup key twice: all of them go
					}
					v.dropMask |= b
				}
			}
			return true
		}
		if s := slotOf[k]; s != 0 {
			v.hasUsage = true
			if s-1 == respIDSlot {
				v.respID, v.hasRespID = val, true
			}
			if f != nil {
				f.set(s-1, val)
			}
		}
		return true
	})
	v.toPrice = v.hasUsage && !v.hasStatus && f != nil
	return v
}

// responseID is the span's gen_ai.response.id ("" when none or not a string).
func (v *spanCostView) responseID() string {
	if !v.hasRespID || v.respID.Type() != pcommon.ValueTypeStr {
		return ""
	}
	return v.respID.Str()
}

// processTrace prices the spans of one trace that carry usage but no cost.status, rolls costs up
// over all of them and writes the trace-scope figures. It never panics on span content.
func processTrace(td ptrace.Traces, opts traceOptions) traceStats {
	return processSpans(collectSpans(td), opts, nil)
}

// scratch holds buffers reused from trace to trace (processSpans, rollupNodes).
type scratch struct {
	spans               []ptrace.Span
	nodes               []node
	views               []spanCostView
	index               map[pcommon.SpanID]int32
	roots, order, stack []int32
	done                []bool
	tree                treeInfo
	found               []found // usage keys of the spans to price, in span order
}

var scratchPool = sync.Pool{New: func() any { return &scratch{} }}

func getScratch() *scratch { return scratchPool.Get().(*scratch) }

func putScratch(sc *scratch) {
	if cap(sc.nodes) > 1<<16 {
		*sc = scratch{} // do not keep a huge trace's buffers
	}
	clear(sc.views[:cap(sc.views)])
	for i := range sc.found {
		sc.found[i].has = 0
		clear(sc.found[i].vals[:])
	}
	if cap(sc.found) > 64 {
		sc.found = nil // a trace with many calls: do not keep its 600-byte slots
	}
	clear(sc.spans[:cap(sc.spans)])
	clear(sc.tree.name[:cap(sc.tree.name)]) // no span strings kept alive in the pool
	scratchPool.Put(sc)
}

func processSpans(spans []ptrace.Span, opts traceOptions, sc *scratch) traceStats {
	st := traceStats{spans: len(spans)}
	if sc == nil {
		sc = &scratch{}
	}
	n := len(spans)
	if cap(sc.nodes) < n {
		sc.nodes = make([]node, n)
		sc.views = make([]spanCostView, n)
	}
	nodes := sc.nodes[:n]
	clear(nodes)
	views := sc.views[:n]
	clear(views)
	var seenResponses map[string]bool
	nFound := 0
	for i, sp := range spans {
		if nFound == len(sc.found) {
			sc.found = append(sc.found, found{})
		}
		views[i] = viewSpan(sp.Attributes(), &sc.found[nFound])
		if views[i].toPrice {
			views[i].foundAt = int32(nFound)
			nFound++
		}
		if views[i].hasStatus && views[i].hasRespID {
			// Priced in-process: its response id counts as seen (unless it is itself a duplicate or an aggregate).
			if s := views[i].status; s.Type() == pcommon.ValueTypeStr && s.Str() != "duplicate" && s.Str() != "aggregate" {
				if id := views[i].responseID(); id != "" {
					if seenResponses == nil {
						seenResponses = map[string]bool{}
					}
					seenResponses[id] = true
				}
			}
		}
	}
	for i, sp := range spans {
		v := &views[i]
		if v.toPrice {
			if seenResponses == nil {
				seenResponses = map[string]bool{}
			}
			w, ok := priceSpan(sp, v, &sc.found[v.foundAt], opts.book, seenResponses, &st)
			if ok {
				// Written into a span that had no cost.* key: the view is known without a re-read.
				v.hasCost, v.hasCurr = true, true
				v.status, v.hasStatus = w.status, true
				v.nanos, v.hasNanos = w.nanos, w.hasNanos
				v.usd, v.hasUSD = w.usd, w.hasNanos
			} else {
				*v = viewSpan(sp.Attributes(), nil)
			}
			v.toPrice = false
		}
		nd := &nodes[i]
		nd.id = sp.SpanID()
		if p := sp.ParentSpanID(); !p.IsEmpty() {
			nd.parent, nd.hasParent = p, true
			// OTLP span flags bit 8: the flags carry is-remote; bit 9: the parent is remote.
			nd.remote = sp.Flags()&0x100 != 0 && sp.Flags()&0x200 != 0
		}
		if v.hasStatus || v.hasNanos || v.hasUSD {
			nd.direct, nd.billable, nd.unpriced = ownCost(v.status, v.hasStatus, v.nanos, v.hasNanos, v.usd, v.hasUSD)
		}
	}
	rollupNodes(nodes, sc)
	agentsFromTree(spans, nodes, sc.index, &sc.tree, func(i int) bool {
		v := &views[i]
		return v.hasStatus && v.status.Type() == pcommon.ValueTypeStr && targetStatus[v.status.Str()]
	})
	for i, sp := range spans {
		nd := &nodes[i]
		v := &views[i]
		reason := opts.partialReason
		if reason == "" {
			switch {
			case nd.overflow:
				reason = reasonOverflow
			case nd.rootKind == kindCycle:
				reason = reasonCycle
			case nd.rootKind == kindDuplicate:
				reason = reasonDuplicate
			case opts.missing[i]:
				reason = reasonMissing
			}
		}
		if !nd.billableSubtree && nd.rootKind != kindRemoteParent && nd.rootKind != kindOrphan && reason == "" && !v.hasDrop {
			continue // nothing to write or remove: the common span
		}
		attrs := sp.Attributes()
		// The keys written now; figures an earlier rollup wrote are replaced: kept where they
		// are when the value is the same (a single-service trace's figures usually are),
		// updated in place when not, removed when not written now.
		var write uint16
		if nd.billableSubtree {
			write |= bitChildren | bitTotal | bitChildrenNanos | bitTotalNanos | bitScope
			if nd.unpricedSubtree > 0 {
				write |= bitUnpriced
			}
		}
		switch nd.rootKind {
		case kindRemoteParent:
			write |= bitRemoteParent
		case kindOrphan:
			write |= bitOrphan
		}
		if reason != "" {
			write |= bitPartial | bitPartialReason
		}
		if v.dropDup {
			attrs.RemoveIf(func(k string, _ pcommon.Value) bool { return replacedKeys[k] })
		} else if v.dropMask&^write != 0 {
			attrs.RemoveIf(func(k string, _ pcommon.Value) bool { return replacedBit[k]&^write != 0 })
		}
		// Room for exactly the keys not there yet: EnsureCapacity copies the attribute slice
		// whenever it grows it (it was the costliest line here when sized generously every time).
		if add := bits.OnesCount16(write &^ v.dropMask); add > 0 || (nd.billableSubtree && !v.hasCurr) {
			attrs.EnsureCapacity(attrs.Len() + add + 1)
		}
		if nd.billableSubtree {
			// A key the view did not see is absent: put it (one scan) instead of set's
			// look-up first (two).
			had := v.dropMask
			if had&bitChildren != 0 {
				setDouble(attrs, attrCostChildren, nanosToUSD(nd.childrenNanos))
			} else {
				attrs.PutDouble(attrCostChildren, nanosToUSD(nd.childrenNanos))
			}
			if had&bitTotal != 0 {
				setDouble(attrs, attrCostTotal, nanosToUSD(nd.totalNanos))
			} else {
				attrs.PutDouble(attrCostTotal, nanosToUSD(nd.totalNanos))
			}
			if had&bitChildrenNanos != 0 {
				setInt(attrs, attrCostChildrenNanos, nd.childrenNanos)
			} else {
				attrs.PutInt(attrCostChildrenNanos, nd.childrenNanos)
			}
			if had&bitTotalNanos != 0 {
				setInt(attrs, attrCostTotalNanos, nd.totalNanos)
			} else {
				attrs.PutInt(attrCostTotalNanos, nd.totalNanos)
			}
			if !v.hasCurr {
				attrs.PutStr(attrCostCurrency, "USD")
			}
			if had&bitScope != 0 {
				setStr(attrs, attrScope, "trace")
			} else {
				attrs.PutStr(attrScope, "trace")
			}
			if nd.unpricedSubtree > 0 {
				setInt(attrs, attrUnpriced, nd.unpricedSubtree)
			}
		}
		switch nd.rootKind {
		case kindRemoteParent:
			setBool(attrs, attrRemoteParent)
		case kindOrphan:
			setBool(attrs, attrOrphan)
		}
		if reason != "" {
			setBool(attrs, attrPartial)
			setStr(attrs, attrPartialReason, reason)
			st.flagged++
		}
	}
	return st
}

// --- CLIENT spans that wait for a child in another service ---------------------------------------

type peerFilter struct {
	await  []*regexp.Regexp
	ignore []*regexp.Regexp
	book   *PriceBook
}

func spanPeer(attrs pcommon.Map) string {
	if v, ok := attrs.Get("server.address"); ok && v.Type() == pcommon.ValueTypeStr && v.Str() != "" {
		return v.Str()
	}
	for _, k := range []string{"url.full", "http.url"} {
		if v, ok := attrs.Get(k); ok && v.Type() == pcommon.ValueTypeStr {
			if u, err := url.Parse(v.Str()); err == nil && u.Hostname() != "" {
				return u.Hostname()
			}
		}
	}
	for _, k := range []string{"net.peer.name", "rpc.service"} {
		if v, ok := attrs.Get(k); ok && v.Type() == pcommon.ValueTypeStr && v.Str() != "" {
			return v.Str()
		}
	}
	return ""
}

// llmish: the span is (part of) an LLM or database call, not a call into another instrumented
// service. An agent, workflow, task or tool span is none of these, whatever it carries: the
// in-process rollup writes cost.children/cost.total on every agent span, and aggregate spans may
// carry summed usage, so neither a cost.* rollup figure nor usage on such a span makes it a call.
func llmish(attrs pcommon.Map) bool {
	str := func(k string) string {
		if v, ok := attrs.Get(k); ok && v.Type() == pcommon.ValueTypeStr {
			return v.Str()
		}
		return ""
	}
	kind := spanKindOf(attrs)
	if kind.aggregate() || str("cost.status") == "aggregate" {
		return false
	}
	if kind == opModelCall {
		return true
	}
	is := false
	attrs.Range(func(k string, _ pcommon.Value) bool {
		if triggerKeys[k] || k == "gen_ai.request.model" || k == "gen_ai.response.model" || k == "llm.model_name" ||
			k == "db.system" || k == "db.system.name" || k == "cost.status" || k == "cost.direct_nanos" {
			is = true
			return false
		}
		return true
	})
	return is
}

func (f *peerFilter) awaitable(sp ptrace.Span, parent *ptrace.Span) bool {
	if sp.Kind() != ptrace.SpanKindClient {
		return false
	}
	attrs := sp.Attributes()
	if llmish(attrs) {
		return false
	}
	if parent != nil && llmish(parent.Attributes()) {
		return false
	}
	peer := spanPeer(attrs)
	if peer != "" && f.book.IsProviderAPI(peer) {
		return false
	}
	for _, re := range f.ignore {
		if peer != "" && re.MatchString(peer) {
			return false
		}
	}
	if len(f.await) > 0 {
		for _, re := range f.await {
			if peer != "" && re.MatchString(peer) {
				return true
			}
		}
		return false
	}
	return true
}

// pendingClients returns the indexes (in collectSpans order) of CLIENT spans still waiting for a
// child, and of every span on their way up to their root (whose totals may therefore be low).
func (f *peerFilter) pendingClients(t *traceState) (map[int]bool, int) {
	if t.clients == 0 {
		return nil, 0
	}
	spans := t.spanList()
	byID := make(map[pcommon.SpanID]int, len(spans))
	hasChild := make(map[pcommon.SpanID]bool, len(spans))
	for i, sp := range spans {
		if _, ok := byID[sp.SpanID()]; !ok {
			byID[sp.SpanID()] = i
		}
		if p := sp.ParentSpanID(); !p.IsEmpty() {
			hasChild[p] = true
		}
	}
	var marked map[int]bool
	pending := 0
	for i, sp := range spans {
		if sp.Kind() != ptrace.SpanKindClient || hasChild[sp.SpanID()] {
			continue
		}
		var parent *ptrace.Span
		if j, ok := byID[sp.ParentSpanID()]; ok && !sp.ParentSpanID().IsEmpty() {
			p := spans[j]
			parent = &p
		}
		if !f.awaitable(sp, parent) {
			continue
		}
		pending++
		if marked == nil {
			marked = map[int]bool{}
		}
		// Mark the path up to the root; bounded by the span count (parent links may loop).
		j := i
		for steps := 0; steps <= len(spans); steps++ {
			if marked[j] && j != i {
				break
			}
			marked[j] = true
			p := spans[j].ParentSpanID()
			k, ok := byID[p]
			if p.IsEmpty() || !ok {
				break
			}
			j = k
		}
	}
	return marked, pending
}
