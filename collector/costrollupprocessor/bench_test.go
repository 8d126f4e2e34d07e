package costrollupprocessor

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor/processortest"
)

// benchBatch builds `traces` traces of 10 spans: a root, 7 plain spans with a few attributes and 2
// LLM calls with usage (priced by the processor), as a gateway would forward them.
func benchBatch(first, traces int) ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "bench")
	ss := rs.ScopeSpans().AppendEmpty()
	ss.Scope().SetName("bench")
	spans := ss.Spans()
	spans.EnsureCapacity(traces * 10)
	start := pcommon.NewTimestampFromTime(time.Unix(1_780_000_000, 0))
	for t := first; t < first+traces; t++ {
		for i := 1; i <= 10; i++ {
			s := spans.AppendEmpty()
			s.SetTraceID(tid(uint64(t)))
			s.SetSpanID(spid(uint64(i)))
			s.SetName(fmt.Sprintf("op %d", i))
			s.SetStartTimestamp(start)
			s.SetEndTimestamp(start + 1000)
			a := s.Attributes()
			if i > 1 {
				s.SetParentSpanID(spid(uint64(1 + (i-2)/3)))
			}
			switch i {
			case 4, 8:
				a.PutStr("gen_ai.operation.name", "chat")
				a.PutStr("gen_ai.provider.name", "openai")
				a.PutStr("gen_ai.request.model", "gpt-4o")
				a.PutInt("gen_ai.usage.input_tokens", 1200)
				a.PutInt("gen_ai.usage.output_tokens", 300)
			default:
				a.PutStr("http.request.method", "GET")
				a.PutStr("url.path", "/api/items")
				a.PutInt("http.response.status_code", 200)
			}
		}
	}
	return td
}

// BenchmarkProcessTrace: pricing + rollup of one 10-span trace.
func BenchmarkProcessTrace(b *testing.B) {
	book := loadGoldenBook(b)
	batches := make([]ptrace.Traces, b.N)
	for i := range batches {
		batches[i] = benchBatch(i, 1)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		processTrace(batches[i], traceOptions{book: book})
	}
	b.ReportMetric(float64(b.N*10)/b.Elapsed().Seconds(), "spans/s")
}

// BenchmarkConsumeAndRelease: the processor end to end (group, hold, price, roll up, pass on) for
// batches of 100 traces x 10 spans; also reports the heap held per buffered span.
func BenchmarkConsumeAndRelease(b *testing.B) {
	cfg := createDefaultConfig().(*Config)
	cfg.PricesFile = goldenDir + "/prices.json"
	sink := new(consumertest.TracesSink)
	p, err := newProcessor(processortest.NewNopSettings(componentType), cfg, consumertest.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	_ = sink
	c := &clock{now: time.Unix(1_780_000_000, 0)}
	p.now = c.Now
	ctx := context.Background()
	batches := make([]ptrace.Traces, b.N)
	for i := range batches {
		batches[i] = benchBatch(i*100, 100)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_ = p.ConsumeTraces(ctx, batches[i])
		c.Advance(cfg.RootWait + time.Millisecond)
		p.releaseDue()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "spans/s")
}

// TestMemoryPerBufferedSpan measures the heap the processor holds per buffered span.
func TestMemoryPerBufferedSpan(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	cfg := createDefaultConfig().(*Config)
	p, err := newProcessor(processortest.NewNopSettings(componentType), cfg, consumertest.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	const batches = 100 // 100k spans
	in := make([]ptrace.Traces, batches)
	for i := range in {
		in[i] = benchBatch(i*100, 100)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range in {
		_ = p.ConsumeTraces(context.Background(), in[i])
	}
	in = nil
	runtime.GC()
	runtime.ReadMemStats(&after)
	_, spans := p.buffered()
	perSpan := float64(after.HeapAlloc-before.HeapAlloc) / float64(spans)
	t.Logf("heap per buffered span: %.0f bytes (%d spans buffered)", perSpan, spans)
	if perSpan > 4096 {
		t.Fatalf("%.0f bytes per buffered span", perSpan)
	}
	runtime.KeepAlive(p)
}
