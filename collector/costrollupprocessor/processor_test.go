package costrollupprocessor

import (
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor/processortest"
)

// clock is a settable time for the processor's window.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func testProcessor(t testing.TB, mutate func(*Config)) (*costRollupProcessor, *consumertest.TracesSink, *clock) {
	t.Helper()
	cfg := createDefaultConfig().(*Config)
	cfg.PricesFile = goldenDir + "/prices.json"
	if mutate != nil {
		mutate(cfg)
	}
	sink := new(consumertest.TracesSink)
	p, err := newProcessor(processortest.NewNopSettings(componentType), cfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{now: time.Unix(1_780_000_000, 0)}
	p.now = c.Now
	return p, sink, c
}

func tid(n uint64) pcommon.TraceID {
	var id pcommon.TraceID
	binary.BigEndian.PutUint64(id[8:], n)
	id[0] = 1
	return id
}

func spid(n uint64) pcommon.SpanID {
	var id pcommon.SpanID
	binary.BigEndian.PutUint64(id[:], n)
	return id
}

type sp struct {
	trace  uint64
	id     uint64
	parent uint64 // 0: none
	kind   ptrace.SpanKind
	attrs  map[string]any
	remote bool
}

func build(service string, spans ...sp) ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", service)
	ss := rs.ScopeSpans().AppendEmpty()
	for _, s := range spans {
		out := ss.Spans().AppendEmpty()
		out.SetTraceID(tid(s.trace))
		out.SetSpanID(spid(s.id))
		if s.parent != 0 {
			out.SetParentSpanID(spid(s.parent))
		}
		out.SetKind(s.kind)
		out.SetStartTimestamp(pcommon.NewTimestampFromTime(time.Unix(1_780_000_000, 0)))
		if s.remote {
			out.SetFlags(0x301)
		}
		_ = out.Attributes().FromRaw(s.attrs)
	}
	return td
}

func gpt4o(in, out int64) map[string]any {
	return map[string]any{"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
		"gen_ai.usage.input_tokens": in, "gen_ai.usage.output_tokens": out}
}

// spansByID indexes the sink's spans of trace n.
func spansByID(sink *consumertest.TracesSink, n uint64) map[uint64]ptrace.Span {
	out := map[uint64]ptrace.Span{}
	for _, td := range sink.AllTraces() {
		for _, s := range collectSpans(td) {
			if s.TraceID() == tid(n) {
				id := s.SpanID()
				out[binary.BigEndian.Uint64(id[:])] = s
			}
		}
	}
	return out
}

func intAttr(t *testing.T, s ptrace.Span, key string) int64 {
	t.Helper()
	v, ok := s.Attributes().Get(key)
	if !ok || v.Type() != pcommon.ValueTypeInt {
		t.Fatalf("span %s: %s missing or not an int (%v)", s.Name(), key, s.Attributes().AsRaw())
	}
	return v.Int()
}

func strAttr(s ptrace.Span, key string) string {
	v, ok := s.Attributes().Get(key)
	if !ok {
		return ""
	}
	return v.AsString()
}

// gpt-4o: $2.50 / $10 per 1M tokens.
const gpt4o1000x100 = 2_500_000 + 1_000_000

func TestReleaseAfterRootWait(t *testing.T) {
	p, sink, c := testProcessor(t, nil)
	ctx := context.Background()
	if err := p.ConsumeTraces(ctx, build("a", sp{trace: 1, id: 1}, sp{trace: 1, id: 2, parent: 1, attrs: gpt4o(1000, 100)})); err != nil {
		t.Fatal(err)
	}
	c.Advance(defaultRootWait - time.Millisecond)
	p.releaseDue()
	if sink.SpanCount() != 0 {
		t.Fatal("released before root_wait")
	}
	c.Advance(2 * time.Millisecond)
	p.releaseDue()
	spans := spansByID(sink, 1)
	if len(spans) != 2 {
		t.Fatalf("%d spans out", len(spans))
	}
	if got := intAttr(t, spans[1], attrCostTotalNanos); got != gpt4o1000x100 {
		t.Fatalf("root total %d", got)
	}
	if strAttr(spans[1], attrScope) != "trace" || strAttr(spans[2], "cost.status") != "priced" {
		t.Fatal(spans[1].Attributes().AsRaw(), spans[2].Attributes().AsRaw())
	}
}

// A CLIENT span into another service holds the trace until that service's spans arrived.
func TestWaitsForChildOfClientSpan(t *testing.T) {
	p, sink, c := testProcessor(t, nil)
	ctx := context.Background()
	client := map[string]any{"http.request.method": "POST", "server.address": "subagent.internal"}
	// Service A: root, an LLM call and a call into service B, all at once.
	_ = p.ConsumeTraces(ctx, build("a", sp{trace: 1, id: 1}, sp{trace: 1, id: 2, parent: 1, attrs: gpt4o(1000, 100)},
		sp{trace: 1, id: 3, parent: 1, kind: ptrace.SpanKindClient, attrs: client}))
	// An HTTP client span under an LLM span (the SDK's own request) never waits.
	_ = p.ConsumeTraces(ctx, build("a", sp{trace: 1, id: 9, parent: 2, kind: ptrace.SpanKindClient,
		attrs: map[string]any{"server.address": "api.openai.com"}}))
	c.Advance(9 * time.Second) // the SDK defaults: 5 s batch delay + 5 s linger in service B
	p.releaseDue()
	if sink.SpanCount() != 0 {
		t.Fatal("released while the CLIENT span had no child")
	}
	_ = p.ConsumeTraces(ctx, build("b", sp{trace: 1, id: 4, parent: 3, kind: ptrace.SpanKindServer, remote: true},
		sp{trace: 1, id: 5, parent: 4, attrs: gpt4o(1000, 100)}))
	c.Advance(defaultRootWait)
	p.releaseDue()
	spans := spansByID(sink, 1)
	if len(spans) != 6 {
		t.Fatalf("%d spans out", len(spans))
	}
	if got := intAttr(t, spans[1], attrCostTotalNanos); got != 2*gpt4o1000x100 {
		t.Fatalf("root total %d, want %d", got, 2*gpt4o1000x100)
	}
	if v, ok := spans[1].Attributes().Get(attrPartial); ok {
		t.Fatalf("root flagged partial: %v", v.AsRaw())
	}
	if _, ok := spans[4].Attributes().Get(attrRemoteParent); ok {
		t.Fatal("service B's top span still says remote_parent")
	}
}

// A root released without its CLIENT span's child says so.
func TestMissingChildFlagged(t *testing.T) {
	p, sink, c := testProcessor(t, nil)
	_ = p.ConsumeTraces(context.Background(), build("a", sp{trace: 1, id: 1}, sp{trace: 1, id: 2, parent: 1, attrs: gpt4o(1000, 100)},
		sp{trace: 1, id: 3, parent: 1, kind: ptrace.SpanKindClient, attrs: map[string]any{"url.full": "http://subagent:8000/run"}}))
	c.Advance(defaultMaxWait)
	p.releaseDue()
	spans := spansByID(sink, 1)
	if len(spans) != 3 {
		t.Fatalf("%d spans out", len(spans))
	}
	for _, id := range []uint64{1, 3} {
		if strAttr(spans[id], attrPartial) != "true" || strAttr(spans[id], attrPartialReason) != reasonMissing {
			t.Fatalf("span %d: %v", id, spans[id].Attributes().AsRaw())
		}
	}
	if _, ok := spans[2].Attributes().Get(attrPartial); ok {
		t.Fatal("the LLM span's own figures are complete")
	}
}

func TestAwaitAndIgnorePeers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		waits  bool
	}{
		{"default", nil, true},
		{"ignored", func(c *Config) { c.IgnorePeers = []string{`^db\.`} }, false},
		{"not awaited", func(c *Config) { c.AwaitPeers = []string{`^agent-`} }, false},
		{"awaited", func(c *Config) { c.AwaitPeers = []string{`^db\.`} }, true},
		{"off", func(c *Config) { c.AwaitChildren = false }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, sink, c := testProcessor(t, tc.mutate)
			_ = p.ConsumeTraces(context.Background(), build("a", sp{trace: 1, id: 1},
				sp{trace: 1, id: 3, parent: 1, kind: ptrace.SpanKindClient, attrs: map[string]any{"server.address": "db.example"}}))
			c.Advance(defaultRootWait + time.Millisecond)
			p.releaseDue()
			if waited := sink.SpanCount() == 0; waited != tc.waits {
				t.Fatalf("waited=%v, want %v", waited, tc.waits)
			}
		})
	}
}

func TestLateSpansFlaggedNotSummedTwice(t *testing.T) {
	p, sink, c := testProcessor(t, nil)
	ctx := context.Background()
	_ = p.ConsumeTraces(ctx, build("a", sp{trace: 1, id: 1}, sp{trace: 1, id: 2, parent: 1, attrs: gpt4o(1000, 100)}))
	c.Advance(defaultRootWait + time.Millisecond)
	p.releaseDue()
	_ = p.ConsumeTraces(ctx, build("b", sp{trace: 1, id: 5, parent: 2, attrs: gpt4o(1000, 100)}))
	c.Advance(defaultRootWait + time.Millisecond)
	p.releaseDue()
	if sink.SpanCount() != 3 {
		t.Fatalf("%d spans out", sink.SpanCount())
	}
	late := spansByID(sink, 1)[5]
	if strAttr(late, attrPartialReason) != reasonLate || strAttr(late, attrOrphan) != "true" {
		t.Fatal(late.Attributes().AsRaw())
	}
	if got := intAttr(t, late, attrCostTotalNanos); got != gpt4o1000x100 {
		t.Fatalf("late total %d", got)
	}
}

func TestNoRootReleasedAtMaxWait(t *testing.T) {
	p, sink, c := testProcessor(t, nil)
	_ = p.ConsumeTraces(context.Background(), build("b", sp{trace: 1, id: 4, parent: 3, remote: true}, sp{trace: 1, id: 5, parent: 4, attrs: gpt4o(1000, 100)}))
	c.Advance(defaultMaxWait - time.Millisecond)
	p.releaseDue()
	if sink.SpanCount() != 0 {
		t.Fatal("released before max_wait")
	}
	c.Advance(time.Millisecond)
	p.releaseDue()
	top := spansByID(sink, 1)[4]
	if strAttr(top, attrRemoteParent) != "true" || intAttr(t, top, attrCostTotalNanos) != gpt4o1000x100 {
		t.Fatal(top.Attributes().AsRaw())
	}
}

func TestBufferFullEvictsOldestFlagged(t *testing.T) {
	p, sink, _ := testProcessor(t, func(c *Config) { c.MaxBufferedSpans = 4 })
	ctx := context.Background()
	_ = p.ConsumeTraces(ctx, build("a", sp{trace: 1, id: 1}, sp{trace: 1, id: 2, parent: 1, attrs: gpt4o(1000, 100)}, sp{trace: 1, id: 3, parent: 1}))
	_ = p.ConsumeTraces(ctx, build("a", sp{trace: 2, id: 1}, sp{trace: 2, id: 2, parent: 1}))
	out := spansByID(sink, 1)
	if len(out) != 3 || strAttr(out[1], attrPartialReason) != reasonBufferFull {
		t.Fatalf("%d spans, %v", len(out), out[1].Attributes().AsRaw())
	}
	if traces, spans := p.buffered(); traces != 1 || spans != 2 {
		t.Fatalf("buffered %d traces %d spans", traces, spans)
	}
}

func TestShutdownReleasesEverything(t *testing.T) {
	p, sink, _ := testProcessor(t, nil)
	if err := p.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	_ = p.ConsumeTraces(context.Background(), build("a", sp{trace: 1, id: 1}, sp{trace: 2, id: 7, parent: 3}))
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if sink.SpanCount() != 2 {
		t.Fatalf("%d spans out", sink.SpanCount())
	}
}

func TestSpansWithoutTraceIDPassAtOnce(t *testing.T) {
	p, sink, _ := testProcessor(t, nil)
	td := build("a", sp{trace: 1, id: 1}, sp{trace: 1, id: 2, parent: 1, attrs: gpt4o(1000, 100)})
	collectSpans(td)[0].SetTraceID(pcommon.TraceID{})
	collectSpans(td)[1].SetTraceID(pcommon.TraceID{})
	_ = p.ConsumeTraces(context.Background(), td)
	if sink.SpanCount() != 2 {
		t.Fatalf("%d spans out", sink.SpanCount())
	}
}

// One hostile trace in a batch does not cost the other traces anything.
func TestBadTraceDoesNotCostOthers(t *testing.T) {
	p, sink, c := testProcessor(t, nil)
	td := build("a",
		sp{trace: 1, id: 1}, sp{trace: 1, id: 2, parent: 1, attrs: gpt4o(1000, 100)},
		sp{trace: 2, id: 1, parent: 1, attrs: map[string]any{"cost.direct_nanos": "lots", "gen_ai.usage.input_tokens": []any{1, 2}}},
		sp{trace: 2, id: 1, parent: 2, attrs: map[string]any{"cost.direct": -3.5}},
		sp{trace: 3, id: 1}, sp{trace: 3, id: 2, parent: 1, attrs: gpt4o(1000, 100)},
	)
	// An empty span id and a span id shared with another trace.
	collectSpans(td)[3].SetSpanID(pcommon.SpanID{})
	_ = p.ConsumeTraces(context.Background(), td)
	c.Advance(defaultMaxWait)
	p.releaseDue()
	if sink.SpanCount() != 6 {
		t.Fatalf("%d spans out", sink.SpanCount())
	}
	for _, n := range []uint64{1, 3} {
		if got := intAttr(t, spansByID(sink, n)[1], attrCostTotalNanos); got != gpt4o1000x100 {
			t.Fatalf("trace %d total %d", n, got)
		}
	}
}

func TestNextConsumerErrorCounted(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	p, err := newProcessor(processortest.NewNopSettings(componentType), cfg, consumertest.NewErr(errors.New("down")))
	if err != nil {
		t.Fatal(err)
	}
	_ = p.ConsumeTraces(context.Background(), build("a", sp{trace: 1, id: 1}))
	p.releaseAll(releaseShutdown) // must not panic
}

// Traces that arrived in one request but go out at different times: each span goes out once.
func TestBlockSharedByTracesReleasedApart(t *testing.T) {
	p, sink, c := testProcessor(t, nil)
	_ = p.ConsumeTraces(context.Background(), build("a",
		sp{trace: 1, id: 1}, sp{trace: 2, id: 5, parent: 4}, sp{trace: 1, id: 2, parent: 1, attrs: gpt4o(1000, 100)},
		sp{trace: 3, id: 1}, sp{trace: 2, id: 6, parent: 5, attrs: gpt4o(1000, 100)}))
	c.Advance(defaultRootWait + time.Millisecond)
	p.releaseDue()
	if sink.SpanCount() != 3 || len(spansByID(sink, 2)) != 0 {
		t.Fatalf("%d spans out after root_wait", sink.SpanCount())
	}
	c.Advance(defaultMaxWait)
	p.releaseDue()
	if sink.SpanCount() != 5 || len(spansByID(sink, 2)) != 2 || intAttr(t, spansByID(sink, 2)[5], attrCostTotalNanos) != gpt4o1000x100 {
		t.Fatalf("%d spans out", sink.SpanCount())
	}
	if intAttr(t, spansByID(sink, 1)[1], attrCostTotalNanos) != gpt4o1000x100 {
		t.Fatal("trace 1")
	}
}

// Many goroutines hand data in and release traces at once (run with -race).
func TestConcurrentConsumeAndRelease(t *testing.T) {
	p, sink, c := testProcessor(t, func(cfg *Config) { cfg.RootWait = 0 })
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				base := uint64(g*1000 + i*10)
				_ = p.ConsumeTraces(context.Background(), build("a",
					sp{trace: base + 1, id: 1}, sp{trace: base + 2, id: 1}, sp{trace: base + 1, id: 2, parent: 1, attrs: gpt4o(10, 1)},
					sp{trace: base + 3, id: 5, parent: 4}, sp{trace: base + 2, id: 2, parent: 1}))
				c.Advance(time.Millisecond)
				p.releaseDue()
			}
		}(g)
	}
	wg.Wait()
	p.releaseAll(releaseShutdown)
	if sink.SpanCount() != 4*50*5 {
		t.Fatalf("%d spans out", sink.SpanCount())
	}
}

// The last remember_released trace ids are remembered (a span of one arriving later is flagged
// late); older ones are forgotten, and an id released again counts from its latest release.
func TestRememberReleasedWindow(t *testing.T) {
	tests := []struct {
		name     string
		releases []uint64 // trace ids released in this order, one at a time
		probe    uint64
		late     bool
	}{
		{name: "within the window", releases: []uint64{1, 2, 3}, probe: 1, late: true},
		{name: "pushed out", releases: []uint64{1, 2, 3, 4}, probe: 1, late: false},
		{name: "newest", releases: []uint64{1, 2, 3, 4}, probe: 4, late: true},
		{name: "released again outlives its first slot", releases: []uint64{1, 2, 1, 3}, probe: 1, late: true},
		{name: "released again stays", releases: []uint64{1, 2, 3, 1, 4, 5}, probe: 1, late: true},
		{name: "released again then pushed out", releases: []uint64{1, 2, 1, 3, 4, 5}, probe: 1, late: false},
		{name: "never released", releases: []uint64{1, 2}, probe: 9, late: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, sink, c := testProcessor(t, func(cfg *Config) { cfg.RememberReleased = 3 })
			ctx := context.Background()
			for i, id := range tc.releases {
				// A root with no cost: released after root_wait.
				_ = p.ConsumeTraces(ctx, build("a", sp{trace: id, id: uint64(100 + i)}))
				c.Advance(defaultRootWait + time.Millisecond)
				p.releaseDue()
			}
			sink.Reset()
			_ = p.ConsumeTraces(ctx, build("b", sp{trace: tc.probe, id: 99, parent: 1, attrs: gpt4o(1000, 100)}))
			c.Advance(defaultMaxWait + time.Millisecond)
			p.releaseDue()
			got := strAttr(spansByID(sink, tc.probe)[99], attrPartialReason) == reasonLate
			if got != tc.late {
				t.Fatalf("late=%v, want %v (%v)", got, tc.late, spansByID(sink, tc.probe)[99].Attributes().AsRaw())
			}
			if len(p.released) > 3 {
				t.Fatalf("%d ids remembered, at most 3", len(p.released))
			}
		})
	}
}
