package costrollupprocessor

import (
	"context"
	"runtime"
	"testing"
	"time"

	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor/processortest"

	"github.com/otel-costs/otel-costs/collector/costrollupprocessor/internal/benchdata"
)

// benchMix: "usage" (LLM spans to price), "priced" (priced in-process), "none" (no LLM spans).
var benchMix = "usage"

// benchBatch builds `traces` traces of 10 spans of the benchMix (internal/benchdata: a tree of
// fan-out 3, 2 LLM calls per trace, the others plain HTTP spans), as a gateway would forward them.
func benchBatch(first, traces int) ptrace.Traces {
	return benchdata.Traces(1, uint64(first), traces, 10, benchMix,
		pcommon.NewTimestampFromTime(time.Unix(1_780_000_000, 0)))
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
	p, err := newProcessor(processortest.NewNopSettings(componentType), cfg, consumertest.NewNop())
	if err != nil {
		b.Fatal(err)
	}
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

// TestMemoryPerBufferedSpan measures the live heap per buffered span: with 100k spans held, minus
// after they all went out (to a consumer that drops them), over the spans held. That is the span
// data itself (moved, not copied, from the request) plus the processor's own per-trace state.
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
	for i := 0; i < batches; i++ {
		_ = p.ConsumeTraces(context.Background(), benchBatch(i*100, 100))
	}
	var held, empty runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&held)
	_, spans := p.buffered()
	p.releaseAll(releaseShutdown)
	runtime.GC()
	runtime.ReadMemStats(&empty)
	perSpan := float64(held.HeapAlloc-empty.HeapAlloc) / float64(spans)
	t.Logf("live heap per buffered span: %.0f bytes (%d spans of ~5 attributes buffered)", perSpan, spans)
	if spans != batches*1000 || perSpan > 4096 {
		t.Fatalf("%.0f bytes per buffered span, %d spans", perSpan, spans)
	}
	runtime.KeepAlive(p)
}

// marshalSink serializes what it gets, as an OTLP exporter would.
type marshalSink struct {
	consumertest.TracesSink
	bytes int
}

func (m *marshalSink) ConsumeTraces(_ context.Context, td ptrace.Traces) error {
	b, _ := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	m.bytes += len(b)
	return nil
}

// BenchmarkPipeline: OTLP decode -> costrollup (1 s of virtual root_wait at 200 requests/s,
// so ~200k spans held) -> OTLP encode, against decode -> encode. Reports both spans/s.
func BenchmarkPipeline(b *testing.B) {
	for _, run := range []struct {
		mix  string
		with bool
	}{{"none", false}, {"none", true}, {"priced", false}, {"priced", true}, {"usage", false}, {"usage", true}} {
		name := run.mix + "/without"
		if run.with {
			name = run.mix + "/with"
		}
		with := run.with
		b.Run(name, func(b *testing.B) {
			benchMix = run.mix
			defer func() { benchMix = "usage" }()
			cfg := createDefaultConfig().(*Config)
			cfg.PricesFile = goldenDir + "/prices.json"
			cfg.RootWait = time.Second
			sink := &marshalSink{}
			p, err := newProcessor(processortest.NewNopSettings(componentType), cfg, sink)
			if err != nil {
				b.Fatal(err)
			}
			c := &clock{now: time.Unix(1_780_000_000, 0)}
			p.now = c.Now
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				raw, _ := (&ptrace.ProtoMarshaler{}).MarshalTraces(benchBatch(i*100, 100))
				b.StartTimer()
				td, _ := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(raw)
				if with {
					_ = p.ConsumeTraces(ctx, td)
					c.Advance(5 * time.Millisecond)
				} else {
					_ = sink.ConsumeTraces(ctx, td)
				}
			}
			b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "spans/s")
		})
	}
}

// BenchmarkConsumeTraces: ConsumeTraces + release of the farm-bench batch (internal/benchdata, as
// internal/loadgen sends it: 100 traces x 16 spans, 3 LLM calls each) per mix, each batch held and
// released (root_wait passed) into a consumer that drops it. Reports ns/span and allocs/span of the
// processor alone (the batch is built outside the timer).
func BenchmarkConsumeTraces(b *testing.B) {
	const traces, perTrace = 100, 16
	for _, mix := range []string{benchdata.MixPriced, benchdata.MixUsage, benchdata.MixNone} {
		b.Run(mix, func(b *testing.B) {
			cfg := createDefaultConfig().(*Config)
			cfg.PricesFile = goldenDir + "/prices.json"
			p, err := newProcessor(processortest.NewNopSettings(componentType), cfg, consumertest.NewNop())
			if err != nil {
				b.Fatal(err)
			}
			c := &clock{now: time.Unix(1_780_000_000, 0)}
			p.now = c.Now
			ctx := context.Background()
			start := pcommon.NewTimestampFromTime(c.now)
			template := benchdata.Traces(1, 0, traces, perTrace, mix, start)
			batch := ptrace.NewTraces()
			var allocs uint64
			var ms runtime.MemStats
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				batch = ptrace.NewTraces()
				template.CopyTo(batch)
				spans := batch.ResourceSpans().At(0).ScopeSpans().At(0).Spans()
				for k := 0; k < spans.Len(); k++ {
					id := spans.At(k).TraceID()
					id[0] = byte(i >> 16)
					id[1] = byte(i >> 8)
					id[2] = byte(i)
					spans.At(k).SetTraceID(id)
				}
				runtime.ReadMemStats(&ms)
				before := ms.Mallocs
				b.StartTimer()
				_ = p.ConsumeTraces(ctx, batch)
				c.Advance(cfg.RootWait + time.Millisecond)
				p.releaseDue()
				b.StopTimer()
				runtime.ReadMemStats(&ms)
				allocs += ms.Mallocs - before
				b.StartTimer()
			}
			n := float64(b.N * traces * perTrace)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/span")
			b.ReportMetric(float64(allocs)/n, "allocs/span")
		})
	}
}

// The priced mix carries what an in-process rollup of the same spans writes: for these
// single-service traces the processor's trace-scope figures equal the process-scope ones on every
// span (and the usage mix, priced by the processor, comes to the same totals).
func TestBenchDataPricedMixIsAnInProcessRollup(t *testing.T) {
	book, err := LoadPriceFile(goldenDir + "/prices.json")
	if err != nil {
		t.Fatal(err)
	}
	start := pcommon.NewTimestampFromTime(time.Unix(1_780_000_000, 0))
	priced := benchdata.Traces(1, 0, 1, 16, benchdata.MixPriced, start) // one trace: processTrace's unit
	usage := benchdata.Traces(1, 0, 1, 16, benchdata.MixUsage, start)
	before := map[pcommon.SpanID]int64{}
	rolled := 0
	for _, sp := range collectSpans(priced) {
		if v, ok := sp.Attributes().Get(attrCostTotalNanos); ok {
			before[sp.SpanID()] = v.Int()
			rolled++
		}
	}
	if rolled != 7 { // 3 calls and their 4 ancestors
		t.Fatalf("%d spans carry a process-scope rollup, want 7", rolled)
	}
	for _, td := range []ptrace.Traces{priced, usage} {
		processTrace(td, traceOptions{book: book})
		for i, sp := range collectSpans(td) {
			want, has := before[sp.SpanID()]
			got, ok := sp.Attributes().Get(attrCostTotalNanos)
			if has != ok || (ok && got.Int() != want) || (ok && strAttr(sp, attrScope) != "trace") {
				t.Fatalf("span %d: total %q (present %v), want %d (present %v): %v", i, strAttr(sp, attrCostTotalNanos), ok,
					want, has, sp.Attributes().AsRaw())
			}
		}
	}
}
