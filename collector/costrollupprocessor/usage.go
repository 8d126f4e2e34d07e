package costrollupprocessor // import "github.com/otel-costs/otel-costs/collector/costrollupprocessor"

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// Token usage read from span attributes, as otel_costs/_usage.py reads it (same names, same
// priority, same checks, same reasons), and the cost attributes written on a span priced here.

var (
	inputKeys     = []string{"gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.token_count.prompt"}
	outputKeys    = []string{"gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens", "llm.token_count.completion"}
	cacheReadKeys = []string{
		"gen_ai.usage.cache_read.input_tokens",
		"gen_ai.usage.cache_read_input_tokens",
		"llm.token_count.prompt_details.cache_read",
		"gen_ai.usage.details.cache_read_tokens",
	}
	cacheWriteKeys = []string{
		"gen_ai.usage.cache_write.input_tokens",
		"gen_ai.usage.cache_creation.input_tokens",
		"gen_ai.usage.cache_creation_input_tokens",
		"llm.token_count.prompt_details.cache_write",
		"gen_ai.usage.details.cache_write_tokens",
	}
	reasoningKeys = []string{
		"gen_ai.usage.reasoning.output_tokens",
		"gen_ai.usage.reasoning_tokens",
		"llm.usage.reasoning_tokens",
		"llm.token_count.completion_details.reasoning",
		"gen_ai.usage.details.reasoning_tokens",
	}
	totalKeys    = []string{"gen_ai.usage.total_tokens", "llm.usage.total_tokens", "llm.token_count.total"}
	modelKeys    = []string{"gen_ai.response.model", "gen_ai.request.model", "llm.model_name", "embedding.model_name"}
	providerKeys = []string{"gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system"}
	serverKeys   = []string{"server.address", "gen_ai.openai.api_base"}

	fieldNames = []string{"input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens"}
	fieldKeys  = [][]string{inputKeys, outputKeys, cacheReadKeys, cacheWriteKeys, reasoningKeys}

	triggerKeys = map[string]bool{}
	readKeys    = map[string]bool{}

	// Every key the usage reading reads has a slot (slotOf[k] = slot+1), so one pass over a
	// span's attributes files them with one map look-up each and the reading indexes slots.
	slotKeys                            []string
	slotOf                              = map[string]uint8{}
	fieldSlots                          [5][]uint8
	modelSlots, providerSlots, srvSlots []uint8
	triggerMask                         uint64
	respIDSlot                          uint8
)

const maxTokens = 10_000_000_000

func init() {
	for _, list := range append(append([][]string{}, fieldKeys...), totalKeys) {
		for _, k := range list {
			triggerKeys[k] = true
		}
	}
	for k := range triggerKeys {
		readKeys[k] = true
	}
	for _, list := range [][]string{modelKeys, providerKeys, serverKeys} {
		for _, k := range list {
			readKeys[k] = true
		}
	}
	for _, k := range []string{markerOperation, markerOISpanKind, markerTLSpanKind, markerTLRequestTy, "gen_ai.response.id", keyErrorType} {
		readKeys[k] = true
	}
	interesting['c'] = true
	for k := range readKeys {
		interesting[k[0]] = true
	}
	for k := range readKeys {
		slotKeys = append(slotKeys, k)
	}
	sort.Strings(slotKeys)
	if len(slotKeys) > usageSlots {
		panic("costrollup: more usage keys than slots")
	}
	for i, k := range slotKeys {
		slotOf[k] = uint8(i + 1)
		if triggerKeys[k] {
			triggerMask |= 1 << i
		}
	}
	slots := func(keys []string) []uint8 {
		out := make([]uint8, len(keys))
		for i, k := range keys {
			out[i] = slotOf[k] - 1
		}
		return out
	}
	for i, keys := range fieldKeys {
		fieldSlots[i] = slots(keys)
	}
	modelSlots, providerSlots, srvSlots = slots(modelKeys), slots(providerKeys), slots(serverKeys)
	respIDSlot = slotOf["gen_ai.response.id"] - 1
}

type readingKind int

const (
	readNone readingKind = iota
	readBillable
	readAggregate
	readInvalid
	readMissing
)

type usageReading struct {
	kind     readingKind
	usage    Usage
	model    string
	provider string
	server   string
	reason   string
	gap      string // billable usage that is not whole: priced as partial with this reason
}

// The whole-usage rules of otel_costs.pricing._usage._whole (issue 13.4, issue 11.3): the same
// reasons, word for word, so both tiers flag a call alike (tests/golden/cases/usage_not_whole.json).
const (
	keyErrorType     = "error.type"
	zeroUsageReason  = "usage reported as zero"
	noInputReason    = "no input token count (gen_ai.usage.input_tokens), only output tokens: priced on the output alone, a lower bound"
	noOutputReason   = "no output token count (gen_ai.usage.output_tokens) on a call that is not an embeddings call: priced on the input alone, a lower bound"
	embeddingModelKy = "embedding.model_name"
)

// isEmbeddings: an embeddings call, which reports no output count (as Python's _embeddings: its
// operation or span kind in any convention, an OpenInference embedding model, or "embed" in the model).
func isEmbeddings(f *found, model string) bool {
	for _, k := range []string{markerOperation, markerOISpanKind, markerTLRequestTy} {
		if v, ok := f.get(k); ok && v.Type() == pcommon.ValueTypeStr {
			if t := strings.ToLower(strings.TrimSpace(v.Str())); t == "embeddings" || t == "embedding" {
				return true
			}
		}
	}
	if _, ok := f.get(embeddingModelKy); ok {
		return true
	}
	return strings.Contains(strings.ToLower(model), "embed")
}

// found holds the usage-related attributes of a span (the last value of a repeated key wins), one
// slot per key the reading knows (slotKeys): filled in the pass that views the span, read by
// index (no map and no linear look-ups per candidate name).
type found struct {
	has  uint64
	vals [usageSlots]pcommon.Value
}

// usageSlots is at least len(slotKeys) (init checks it).
const usageSlots = 40

// set records the value of slot i (replacing an earlier value of the same key).
func (f *found) set(i uint8, v pcommon.Value) {
	f.has |= 1 << i
	f.vals[i] = v
}

func (f *found) at(i uint8) (pcommon.Value, bool) {
	if f.has&(1<<i) == 0 {
		return pcommon.Value{}, false
	}
	return f.vals[i], true
}

// get is at by key name (for classify's marker keys).
func (f *found) get(k string) (pcommon.Value, bool) {
	if s := slotOf[k]; s != 0 {
		return f.at(s - 1)
	}
	return pcommon.Value{}, false
}

func (f *found) str(i uint8) (string, bool) {
	v, ok := f.at(i)
	if !ok || v.Type() != pcommon.ValueTypeStr {
		return "", false
	}
	return v.Str(), true
}

func (f *found) firstString(slots []uint8) string {
	for _, i := range slots {
		if s, ok := f.str(i); ok {
			if t := strings.TrimSpace(s); t != "" {
				return t
			}
		}
	}
	return ""
}

// collectFound fills a found from a span's attributes (for callers outside viewSpan's pass).
func collectFound(attrs pcommon.Map, f *found) {
	f.has = 0
	attrs.Range(func(k string, val pcommon.Value) bool {
		if s := slotOf[k]; s != 0 {
			f.set(s-1, val)
		}
		return true
	})
}

func pyFloatRepr(v float64) string {
	switch {
	case math.IsNaN(v):
		return "nan"
	case math.IsInf(v, 1):
		return "inf"
	case math.IsInf(v, -1):
		return "-inf"
	}
	s := strconv.FormatFloat(v, 'g', -1, 64)
	if !strings.ContainsAny(s, ".eEn") {
		s += ".0"
	}
	if i := strings.Index(s, "e"); i >= 0 {
		// Python writes 1e+20 and 1e-05: a two-digit exponent at least.
		mant, exp := s[:i], s[i+1:]
		sign := exp[0]
		digits := exp[1:]
		if len(digits) < 2 {
			digits = "0" + digits
		}
		s = mant + "e" + string(sign) + digits
	}
	return s
}

func pyStrRepr(s string) string {
	r := []rune(s)
	if len(r) > 40 {
		r = r[:40]
	}
	return pyRepr(string(r))
}

func valueTypeName(v pcommon.Value) string {
	switch v.Type() {
	case pcommon.ValueTypeBytes:
		return "bytes"
	case pcommon.ValueTypeSlice:
		return "list"
	case pcommon.ValueTypeMap:
		return "dict"
	default:
		return "NoneType"
	}
}

// parseCount reads a token count: ints, whole finite doubles, ASCII-digit strings.
func parseCount(v pcommon.Value) (int64, string) {
	var count int64
	switch v.Type() {
	case pcommon.ValueTypeBool:
		b := "False"
		if v.Bool() {
			b = "True"
		}
		return 0, fmt.Sprintf("is a bool (%s), not a token count", b)
	case pcommon.ValueTypeInt:
		count = v.Int()
	case pcommon.ValueTypeDouble:
		d := v.Double()
		if math.IsNaN(d) || math.IsInf(d, 0) {
			return 0, fmt.Sprintf("is not finite (%s)", pyFloatRepr(d))
		}
		if d != math.Trunc(d) {
			return 0, fmt.Sprintf("is not a whole number (%s)", pyFloatRepr(d))
		}
		if d > maxTokens {
			return 0, fmt.Sprintf("is absurdly large (%s > %d)", strconv.FormatFloat(d, 'f', 0, 64), int64(maxTokens))
		}
		if d < -maxTokens {
			return 0, fmt.Sprintf("is negative (%s)", strconv.FormatFloat(d, 'f', 0, 64))
		}
		count = int64(d)
	case pcommon.ValueTypeStr:
		s := v.Str()
		if s == "" || strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' }) >= 0 {
			return 0, fmt.Sprintf("is a string that is not a whole number (%s)", pyStrRepr(s))
		}
		if len(s) > 20 {
			return 0, fmt.Sprintf("is absurdly large (%s...)", pyStrRepr(s))
		}
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil || n > maxTokens {
			return 0, fmt.Sprintf("is absurdly large (%s > %d)", strings.TrimLeft(s, "0"), int64(maxTokens))
		}
		count = int64(n)
	default:
		return 0, fmt.Sprintf("has type %s, not a token count", valueTypeName(v))
	}
	if count < 0 {
		return 0, fmt.Sprintf("is negative (%d)", count)
	}
	if count > maxTokens {
		return 0, fmt.Sprintf("is absurdly large (%d > %d)", count, int64(maxTokens))
	}
	return count, ""
}

func usageProblem(u Usage) string {
	if u.CacheRead+u.CacheWrite > u.Input {
		return fmt.Sprintf("cache reads (%d) + cache writes (%d) exceed input tokens (%d); the input count must include cached tokens "+
			"(an Anthropic-style uncached input count was probably written as the total)", u.CacheRead, u.CacheWrite, u.Input)
	}
	if u.Reasoning > u.Output {
		return fmt.Sprintf("reasoning tokens (%d) exceed output tokens (%d); the output count must include reasoning tokens", u.Reasoning, u.Output)
	}
	return ""
}

func aggregateReason(f *found) string {
	kind, marker, value := classify(f.get)
	if !kind.aggregate() {
		return ""
	}
	switch marker {
	case markerOISpanKind:
		return fmt.Sprintf("usage on an OpenInference %s span is the sum of its child calls", strings.ToUpper(value))
	case markerTLSpanKind:
		return fmt.Sprintf("usage on a traceloop %s span is the sum of its child calls", strings.ToLower(value))
	}
	return fmt.Sprintf("usage on a %s span is the sum of its child calls", value)
}

const missingUsageReason = "the model call reported no token usage (an error response, or a stream read without its usage " +
	"record: for OpenAI streams pass stream_options={'include_usage': True})"

// readUsage reads a span's usage from its found attributes (readNone: it carries none).
func readUsage(f *found) usageReading {
	if f.has&triggerMask == 0 {
		// No usage: only a model call (by the span-kind table) is flagged for it.
		if kind, _, _ := classify(f.get); kind != opModelCall {
			return usageReading{}
		}
		return usageReading{kind: readMissing, model: f.firstString(modelSlots), provider: f.firstString(providerSlots),
			server: f.firstString(srvSlots), reason: missingUsageReason}
	}
	var counts [5]int64
	var have [5]bool
	problem := ""
	for i, slots := range fieldSlots {
		for _, slot := range slots {
			v, ok := f.at(slot)
			if !ok || v.Type() == pcommon.ValueTypeEmpty {
				continue
			}
			n, p := parseCount(v)
			if p != "" {
				problem = slotKeys[slot] + " " + p
			} else {
				counts[i], have[i] = n, true
			}
			break
		}
		if problem != "" {
			break
		}
	}
	if problem == "" && !have[0] && !have[1] {
		var present []string // sorted: slotKeys is
		for i, k := range slotKeys {
			if f.has&triggerMask&(1<<i) != 0 {
				present = append(present, k)
			}
		}
		problem = "no input or output token count, only " + strings.Join(present, ", ")
	}
	r := usageReading{}
	if problem == "" {
		r.usage = Usage{counts[0], counts[1], counts[2], counts[3], counts[4]}
		problem = usageProblem(r.usage)
		if problem == "" {
			r.model, r.provider, r.server = f.firstString(modelSlots), f.firstString(providerSlots), f.firstString(srvSlots)
		}
	}
	if agg := aggregateReason(f); agg != "" {
		r.kind, r.reason = readAggregate, agg
		if problem != "" {
			r.reason = agg + "; its usage is unreadable: " + problem
		}
		return r
	}
	if problem != "" {
		return usageReading{kind: readInvalid, reason: problem}
	}
	r.kind = readBillable
	if u := r.usage; u.Input == 0 && u.Output == 0 && u.CacheRead == 0 && u.CacheWrite == 0 {
		return usageReading{kind: readMissing, reason: zeroUsageReason}
	}
	if !have[0] {
		r.gap = noInputReason
	} else if _, failed := f.get(keyErrorType); !have[1] && !failed && !isEmbeddings(f, r.model) {
		r.gap = noOutputReason
	}
	return r
}

// --- Writing the cost attributes of a span priced here ---------------------------------------------

var pricedKeys = map[string]bool{
	"cost.currency": true, "cost.status": true, "cost.status_reason": true, "cost.provider": true, "cost.model": true,
	"cost.price_source": true, "cost.direct": true, "gen_ai.usage.cost": true, "cost.direct_nanos": true,
	"cost.input": true, "cost.cache_read": true, "cost.cache_write": true, "cost.output": true,
}

type dedupMap struct{ m pcommon.Map }

// clean keeps only the last value of each key the pricing writes, so a Put replaces it fully.
func (d dedupMap) clean() pcommon.Map {
	last := map[string]int{}
	i := 0
	d.m.Range(func(k string, _ pcommon.Value) bool {
		if pricedKeys[k] {
			last[k] = i
		}
		i++
		return true
	})
	i = 0
	d.m.RemoveIf(func(k string, _ pcommon.Value) bool {
		drop := pricedKeys[k] && last[k] != i
		i++
		return drop
	})
	return d.m
}

// written are the values priceSpan wrote that the rollup reads (valid until the span's
// attributes change again).
type written struct {
	status, nanos, usd pcommon.Value
	hasNanos           bool
}

// Strings of the cost attributes written on every priced span.
const (
	keyProvider    = "cost.provider"
	keyModel       = "cost.model"
	keyPriceSource = "cost.price_source"
	keyGenAICost   = "gen_ai.usage.cost"
	keyInput       = "cost.input"
	keyCacheRead   = "cost.cache_read"
	keyCacheWrite  = "cost.cache_write"
	keyOutput      = "cost.output"
)

// priceSpan writes the cost attributes of a span that carries usage but was not priced
// in-process (as otel_costs.CostSpanProcessor would have written them). ok: the span had no
// cost.* key before and w holds what the rollup needs (else the caller views the span again).
func priceSpan(sp ptrace.Span, v *spanCostView, f *found, book *PriceBook, seen map[string]bool, st *traceStats) (w written, ok bool) {
	r := readUsage(f)
	if r.kind == readNone {
		return written{}, false
	}
	attrs := sp.Attributes()
	if v.hasCost {
		// The span already carries cost.* keys (maybe repeated): each key written here
		// replaces all of its earlier values, the others stay as they are.
		attrs = dedupMap{attrs}.clean()
	}
	if r.kind != readAggregate {
		if id, ok := f.str(respIDSlot); ok && id != "" {
			if seen[id] {
				attrs.PutStr(attrCostCurrency, "USD")
				attrs.PutStr(attrCostStatus, "duplicate")
				attrs.PutStr(attrCostStatusReason, duplicateReason)
				st.duplicate++
				return written{}, false
			}
			seen[id] = true
		}
	}
	// The 12 keys priced here and the 6 rollup keys written next (processSpans): one growth,
	// so the values handed back in w stay where they are.
	attrs.EnsureCapacity(attrs.Len() + 18)
	attrs.PutStr(attrCostCurrency, "USD")
	w.status = attrs.PutEmpty(attrCostStatus)
	ok = !v.hasCost
	switch r.kind {
	case readAggregate:
		w.status.SetStr("aggregate")
		attrs.PutStr(attrCostStatusReason, r.reason)
		return w, ok
	case readMissing:
		w.status.SetStr("unpriced")
		attrs.PutStr(attrCostStatusReason, r.reason)
		st.unpriced++
		return w, ok
	case readInvalid:
		w.status.SetStr("invalid_usage")
		attrs.PutStr(attrCostStatusReason, r.reason)
		st.invalid++
		return w, ok
	}
	at := sp.StartTimestamp().AsTime()
	if sp.StartTimestamp() == 0 {
		at = time.Now()
	}
	var cost Cost
	reason := "no prices_file configured: the processor has no prices"
	priced := false
	if book != nil {
		cost, reason, priced = book.Price(r.provider, r.server, r.model, r.usage, at)
	}
	if !priced {
		if r.gap != "" { // as Python: a one-sided call stays partial, with the price's reason
			w.status.SetStr("partial")
		} else {
			w.status.SetStr("unpriced")
		}
		attrs.PutStr(attrCostStatusReason, reason)
		if r.provider != "" {
			attrs.PutStr(keyProvider, r.provider)
		}
		if r.model != "" {
			attrs.PutStr(keyModel, r.model)
		}
		st.unpriced++
		return w, ok
	}
	if r.gap != "" {
		w.status.SetStr("partial")
		attrs.PutStr(attrCostStatusReason, r.gap)
	} else {
		w.status.SetStr("priced")
	}
	if cost.Provider != "" {
		attrs.PutStr(keyProvider, cost.Provider)
	}
	if cost.Model != "" {
		attrs.PutStr(keyModel, cost.Model)
	}
	if cost.Source != "" {
		attrs.PutStr(keyPriceSource, cost.Source)
	}
	usd := nanosToUSD(cost.Nanos)
	w.usd = attrs.PutEmpty(attrCostDirect)
	w.usd.SetDouble(usd)
	attrs.PutDouble(keyGenAICost, usd)
	w.nanos = attrs.PutEmpty(attrCostDirectNanos)
	w.nanos.SetInt(cost.Nanos)
	w.hasNanos = true
	attrs.PutDouble(keyInput, cost.Input)
	attrs.PutDouble(keyCacheRead, cost.CacheRead)
	attrs.PutDouble(keyCacheWrite, cost.CacheWrite)
	attrs.PutDouble(keyOutput, cost.Output)
	st.priced++
	return w, ok
}
