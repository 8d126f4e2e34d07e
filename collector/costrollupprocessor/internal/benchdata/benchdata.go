// Package benchdata builds the batches of the Collector benchmark: the same traces for the load
// generator that drives a built worker Collector (benchmarks/bench_collector.sh) and for the Go
// benchmarks of the processor beside the code, so both measure one realistic mix.
package benchdata

import (
	"encoding/binary"
	"fmt"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// Mixes of LLM spans in a batch.
const (
	// MixUsage: LLM spans carry token usage only (the worker prices them).
	MixUsage = "usage"
	// MixPriced: priced and rolled up in-process (cost.* on the calls, the process-scope rollup on
	// their ancestors, as otel-costs leaves them): the worker only rolls up, across services.
	MixPriced = "priced"
	// MixNone: no LLM spans.
	MixNone = "none"
)

// Traces builds `traces` traces of spansPerTrace spans each under one resource and scope, trace
// ids high||first+t, spans numbered 1.. with span i's parent 1+(i-2)/3 (a tree of fan-out 3), every
// span i with i%5 == 4 an LLM call of the mix (2 of 10, 3 of 16), the others plain HTTP spans.
func Traces(high, first uint64, traces, spansPerTrace int, mix string, start pcommon.Timestamp) ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "loadgen")
	ss := rs.ScopeSpans().AppendEmpty()
	ss.Scope().SetName("loadgen")
	spans := ss.Spans()
	spans.EnsureCapacity(traces * spansPerTrace)
	for t := 0; t < traces; t++ {
		var tid pcommon.TraceID
		binary.BigEndian.PutUint64(tid[:8], high)
		binary.BigEndian.PutUint64(tid[8:], first+uint64(t))
		for i := 1; i <= spansPerTrace; i++ {
			s := spans.AppendEmpty()
			s.SetTraceID(tid)
			var sid pcommon.SpanID
			binary.BigEndian.PutUint64(sid[:], uint64(i))
			s.SetSpanID(sid)
			if i > 1 {
				var pid pcommon.SpanID
				binary.BigEndian.PutUint64(pid[:], uint64(1+(i-2)/3))
				s.SetParentSpanID(pid)
			}
			s.SetName(fmt.Sprintf("op %d", i))
			s.SetStartTimestamp(start)
			s.SetEndTimestamp(start + 1_000_000)
			a := s.Attributes()
			if i%5 == 4 && mix != MixNone {
				a.PutStr("gen_ai.operation.name", "chat")
				a.PutStr("gen_ai.provider.name", "openai")
				a.PutStr("gen_ai.request.model", "gpt-4o")
				a.PutInt("gen_ai.usage.input_tokens", int64(1000+i))
				a.PutInt("gen_ai.usage.output_tokens", 300)
				if mix == MixPriced {
					putPriced(a, int64(1000+i))
				}
			} else {
				a.PutStr("http.request.method", "GET")
				a.PutStr("url.path", "/api/items")
				a.PutInt("http.response.status_code", 200)
			}
		}
		if mix == MixPriced {
			putProcessRollup(spans, spans.Len()-spansPerTrace, spansPerTrace)
		}
	}
	return td
}

// putProcessRollup writes what otel-costs' CostRollupExporter leaves on the ancestors of a trace's
// priced calls in-process (its spans are spans[first:first+n], span i at first+i-1): the
// process-scope cost.children/total of their subtree, which the worker replaces with the trace's.
func putProcessRollup(spans ptrace.SpanSlice, first, n int) {
	below := make([]int64, n+1) // below[i]: nanos priced in span i's subtree, itself excluded
	for i := n; i >= 2; i-- {
		own := int64(0)
		if v, ok := spans.At(first + i - 1).Attributes().Get("cost.direct_nanos"); ok {
			own = v.Int()
		}
		below[1+(i-2)/3] += own + below[i]
	}
	for i := 1; i <= n; i++ {
		a := spans.At(first + i - 1).Attributes()
		own, priced := a.Get("cost.direct_nanos")
		if below[i] == 0 && !priced {
			continue
		}
		total := below[i]
		if priced {
			total += own.Int()
		} else {
			a.PutStr("cost.currency", "USD")
		}
		a.PutDouble("cost.children", float64(below[i])/1e9)
		a.PutInt("cost.children_nanos", below[i])
		a.PutDouble("cost.total", float64(total)/1e9)
		a.PutInt("cost.total_nanos", total)
		a.PutStr("cost.rollup.scope", "process")
	}
}

// putPriced writes what otel-costs' CostSpanProcessor + CostRollupExporter leave on a gpt-4o call
// in-process (including the process-scope rollup figures the worker replaces).
func putPriced(a pcommon.Map, input int64) {
	nanos := input*2500 + 300*10000
	usd := float64(nanos) / 1e9
	a.PutStr("cost.currency", "USD")
	a.PutStr("cost.status", "priced")
	a.PutStr("cost.provider", "openai")
	a.PutStr("cost.model", "gpt-4o")
	a.PutStr("cost.price_source", "genai-prices")
	a.PutDouble("cost.direct", usd)
	a.PutDouble("gen_ai.usage.cost", usd)
	a.PutInt("cost.direct_nanos", nanos)
	a.PutDouble("cost.input", float64(input)*2.5e-6)
	a.PutDouble("cost.cache_read", 0)
	a.PutDouble("cost.cache_write", 0)
	a.PutDouble("cost.output", 0.003)
	a.PutDouble("cost.children", 0)
	a.PutInt("cost.children_nanos", 0)
	a.PutDouble("cost.total", usd)
	a.PutInt("cost.total_nanos", nanos)
	a.PutStr("cost.rollup.scope", "process")
}
