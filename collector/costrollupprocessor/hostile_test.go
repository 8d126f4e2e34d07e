package costrollupprocessor

import (
	"context"
	"math"
	"testing"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// Hostile traces: flags, never a panic, never a span lost.

func chainTrace(n int, each func(i int, s ptrace.Span)) ptrace.Traces {
	td := ptrace.NewTraces()
	ss := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans()
	ss.EnsureCapacity(n)
	for i := 1; i <= n; i++ {
		s := ss.AppendEmpty()
		s.SetTraceID(tid(1))
		s.SetSpanID(spid(uint64(i)))
		if i > 1 {
			s.SetParentSpanID(spid(uint64(i - 1)))
		}
		if each != nil {
			each(i, s)
		}
	}
	return td
}

func rootOf(td ptrace.Traces) ptrace.Span { return collectSpans(td)[0] }

func TestHostileDeepChain(t *testing.T) {
	const n = 100_000
	td := chainTrace(n, func(i int, s ptrace.Span) {
		if i%10 == 0 {
			s.Attributes().PutStr("cost.status", "priced")
			s.Attributes().PutInt("cost.direct_nanos", 3)
		}
	})
	processTrace(td, traceOptions{})
	if got := rootOf(td); got.Attributes().Len() == 0 {
		t.Fatal("no figures on the root")
	} else if v, _ := got.Attributes().Get(attrCostTotalNanos); v.Int() != 3*n/10 {
		t.Fatalf("root total %d", v.Int())
	}
}

func TestHostileWideFanOut(t *testing.T) {
	const n = 200_000
	td := ptrace.NewTraces()
	ss := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans()
	root := ss.AppendEmpty()
	root.SetTraceID(tid(1))
	root.SetSpanID(spid(1))
	for i := 2; i <= n; i++ {
		s := ss.AppendEmpty()
		s.SetTraceID(tid(1))
		s.SetSpanID(spid(uint64(i)))
		s.SetParentSpanID(spid(1))
		s.Attributes().PutInt("cost.direct_nanos", 2)
	}
	processTrace(td, traceOptions{})
	if v, _ := rootOf(td).Attributes().Get(attrCostChildrenNanos); v.Int() != 2*(n-1) {
		t.Fatalf("root children %d", v.Int())
	}
}

func TestHostileBigCycle(t *testing.T) {
	// 50,000 spans whose parent links form one loop, plus a tail hanging off it.
	const n = 50_000
	td := chainTrace(n, func(i int, s ptrace.Span) {
		s.Attributes().PutInt("cost.direct_nanos", 1)
	})
	collectSpans(td)[0].SetParentSpanID(spid(n))
	processTrace(td, traceOptions{})
	cut := 0
	var total int64
	for _, s := range collectSpans(td) {
		if r, ok := s.Attributes().Get(attrPartialReason); ok && r.Str() == reasonCycle {
			cut++
			total = mustInt(t, s, attrCostTotalNanos)
		}
	}
	if cut != 1 || total != n {
		t.Fatalf("%d cuts, total %d", cut, total)
	}
}

func mustInt(t *testing.T, s ptrace.Span, k string) int64 {
	t.Helper()
	v, ok := s.Attributes().Get(k)
	if !ok || v.Type() != pcommon.ValueTypeInt {
		t.Fatalf("%s: %v", k, s.Attributes().AsRaw())
	}
	return v.Int()
}

func TestHostileOverflow(t *testing.T) {
	td := build("a", sp{trace: 1, id: 1}, sp{trace: 1, id: 2, parent: 1}, sp{trace: 1, id: 3, parent: 1}, sp{trace: 1, id: 4, parent: 2})
	spans := collectSpans(td)
	for _, s := range spans[1:] {
		s.Attributes().PutInt("cost.direct_nanos", math.MaxInt64-10)
	}
	processTrace(td, traceOptions{})
	for i, s := range spans[:2] {
		if r, _ := s.Attributes().Get(attrPartialReason); r.Str() != reasonOverflow {
			t.Fatalf("span %d: %v", i, s.Attributes().AsRaw())
		}
		if mustInt(t, s, attrCostTotalNanos) != math.MaxInt64 {
			t.Fatal("an overflowing total saturates")
		}
	}
	if _, ok := spans[2].Attributes().Get(attrPartial); ok {
		t.Fatal("a leaf that does not overflow is not flagged")
	}
}

// The same key twice: the last value counts (as Python reads it), and the rollup figures an
// earlier rollup wrote twice are all replaced.
func TestHostileRepeatedKeys(t *testing.T) {
	td := build("a", sp{trace: 1, id: 1}, sp{trace: 1, id: 2, parent: 1})
	spans := collectSpans(td)
	// pcommon.Map keeps repeated keys as they came off the wire: build them through raw JSON.
	doc := []byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[
	 {"traceId":"0100000000000000000000000000000a","spanId":"0000000000000001","attributes":[
	   {"key":"cost.total_nanos","value":{"intValue":"5"}},{"key":"cost.total_nanos","value":{"intValue":"6"}}]},
	 {"traceId":"0100000000000000000000000000000a","spanId":"0000000000000002","parentSpanId":"0000000000000001","attributes":[
	   {"key":"cost.direct_nanos","value":{"intValue":"7"}},{"key":"cost.direct_nanos","value":{"intValue":"9"}},
	   {"key":"gen_ai.usage.input_tokens","value":{"intValue":"1"}},{"key":"gen_ai.usage.input_tokens","value":{"stringValue":"x"}}]}]}]}]}`)
	_ = spans
	td, err := (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(doc)
	if err != nil {
		t.Fatal(err)
	}
	processTrace(td, traceOptions{})
	spans = collectSpans(td)
	root := spans[0]
	count := 0
	root.Attributes().Range(func(k string, v pcommon.Value) bool {
		if k == attrCostTotalNanos {
			count++
			if v.Int() != 9 {
				t.Fatalf("root total %d, want 9 (the last cost.direct_nanos)", v.Int())
			}
		}
		return true
	})
	if count != 1 {
		t.Fatalf("%d cost.total_nanos on the root", count)
	}
}

func TestHostileValues(t *testing.T) {
	values := []map[string]any{
		{"cost.direct": math.NaN()},
		{"cost.direct": math.Inf(1)},
		{"cost.direct": -1.0},
		{"cost.direct": 1e300},
		{"cost.direct_nanos": -5},
		{"cost.direct_nanos": "12"},
		{"cost.direct_nanos": 1.5},
		{"cost.direct_nanos": true},
		{"cost.status": 42},
		{"gen_ai.usage.input_tokens": math.NaN(), "gen_ai.usage.output_tokens": 1},
		{"gen_ai.usage.input_tokens": 1e300, "gen_ai.usage.output_tokens": 1},
		{"gen_ai.usage.input_tokens": "99999999999999999999999", "gen_ai.usage.output_tokens": 1},
		{"gen_ai.usage.input_tokens": []any{1}, "gen_ai.usage.output_tokens": map[string]any{"a": 1}},
		{"gen_ai.usage.input_tokens": int64(math.MaxInt64), "gen_ai.usage.output_tokens": int64(math.MinInt64)},
		{"gen_ai.usage.input_tokens": 10_000_000_000, "gen_ai.usage.output_tokens": 10_000_000_000, "gen_ai.request.model": "gpt-4o", "gen_ai.provider.name": "openai"},
		{"gen_ai.operation.name": "chat"},
		{"gen_ai.usage.input_tokens": []byte{1, 2}},
	}
	spans := []sp{{trace: 1, id: 1}}
	for i, v := range values {
		spans = append(spans, sp{trace: 1, id: uint64(i + 2), parent: 1, attrs: v})
	}
	td := build("a", spans...)
	processTrace(td, traceOptions{book: loadGoldenBook(t)})
	root := collectSpans(td)[0]
	unpriced := mustInt(t, root, attrUnpriced)
	if unpriced < 10 {
		t.Fatalf("only %d unpriced flagged: %v", unpriced, root.Attributes().AsRaw())
	}
	// The huge but valid call is priced exactly: 1e10 * 2.5 + 1e10 * 10 per 1M = $125,000.
	if got := mustInt(t, root, attrCostTotalNanos); got != 125_000*1_000_000_000 {
		t.Fatalf("root total %d", got)
	}
}

// The processor side: a hostile batch goes through ConsumeTraces and out, nothing lost.
func TestHostileBatchThroughProcessor(t *testing.T) {
	p, sink, c := testProcessor(t, nil)
	td := chainTrace(20_000, nil)
	collectSpans(td)[0].SetParentSpanID(spid(20_000)) // one loop, no root
	more := build("a", sp{trace: 2, id: 1}, sp{trace: 2, id: 1}, sp{trace: 2, id: 2, parent: 2})
	more.ResourceSpans().MoveAndAppendTo(td.ResourceSpans())
	if err := p.ConsumeTraces(context.Background(), td); err != nil {
		t.Fatal(err)
	}
	c.Advance(defaultMaxWait)
	p.releaseDue()
	if sink.SpanCount() != 20_003 {
		t.Fatalf("%d spans out", sink.SpanCount())
	}
}
