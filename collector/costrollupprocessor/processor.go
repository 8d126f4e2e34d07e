package costrollupprocessor // import "github.com/otel-costs/otel-costs/collector/costrollupprocessor"

import (
	"container/heap"
	"container/list"
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor"
	"go.uber.org/zap"
)

// Why a trace was released.
const (
	releaseRoot       = "root"
	releaseMaxWait    = "max_wait"
	releaseLate       = "late"
	releaseBufferFull = "buffer_full"
	releaseShutdown   = "shutdown"
	releaseNoTraceID  = "no_trace_id"
)

// group is a resource and scope spans arrived under; equal ones (same key) are sent out under one
// ResourceSpans / ScopeSpans, whichever request and trace their spans came in.
type group struct {
	key      string
	resource pcommon.Resource
	rsSchema string
	scope    pcommon.InstrumentationScope
	ssSchema string
}

// chunk is spans of one trace that arrived together under one group.
type chunk struct {
	g     *group
	spans ptrace.SpanSlice
}

type traceState struct {
	id        pcommon.TraceID
	chunks    []chunk
	spans     int
	clients   int // CLIENT spans: only then can a child be missing
	firstSeen time.Time
	hasRoot   bool
	deadline  time.Time // root_wait deadline; zero: none (no root yet, or waiting for a child)
	waiting   bool      // a CLIENT span had no child at the deadline
	late      bool
	elem      *list.Element // in arrival order, for eviction
}

func (t *traceState) spanList() []ptrace.Span {
	out := make([]ptrace.Span, 0, t.spans)
	for _, c := range t.chunks {
		for i := 0; i < c.spans.Len(); i++ {
			out = append(out, c.spans.At(i))
		}
	}
	return out
}

// groupKey identifies a resource and scope by their content.
func groupKey(rs ptrace.ResourceSpans, ss ptrace.ScopeSpans) string {
	var b strings.Builder
	writeMap := func(m pcommon.Map) {
		m.Range(func(k string, v pcommon.Value) bool {
			b.WriteString(k)
			b.WriteByte(0)
			b.WriteString(v.Type().String())
			b.WriteByte(0)
			b.WriteString(v.AsString())
			b.WriteByte(0)
			return true
		})
	}
	writeMap(rs.Resource().Attributes())
	b.WriteByte(1)
	b.WriteString(rs.SchemaUrl())
	b.WriteByte(1)
	b.WriteString(ss.Scope().Name())
	b.WriteByte(0)
	b.WriteString(ss.Scope().Version())
	b.WriteByte(1)
	writeMap(ss.Scope().Attributes())
	b.WriteByte(1)
	b.WriteString(ss.SchemaUrl())
	fmt.Fprintf(&b, "\x01%d\x01%d", rs.Resource().DroppedAttributesCount(), ss.Scope().DroppedAttributesCount())
	return b.String()
}

func (t *traceState) due(maxWait time.Duration) time.Time {
	hard := t.firstSeen.Add(maxWait)
	if !t.deadline.IsZero() && t.deadline.Before(hard) {
		return t.deadline
	}
	return hard
}

type heapItem struct {
	due time.Time
	id  pcommon.TraceID
}

type dueHeap []heapItem

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h dueHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)        { *h = append(*h, x.(heapItem)) }
func (h *dueHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}

type released struct {
	t      *traceState
	reason string
}

type costRollupProcessor struct {
	cfg     *Config
	next    consumer.Traces
	logger  *zap.Logger
	book    *PriceBook
	filter  *peerFilter
	metrics *telemetry
	now     func() time.Time

	mu       sync.Mutex
	traces   map[pcommon.TraceID]*traceState
	order    *list.List
	heap     dueHeap
	spans    int
	released map[pcommon.TraceID]*list.Element
	relOrder *list.List

	stop    chan struct{}
	stopped chan struct{}
	once    sync.Once
	started atomic.Bool
}

func newProcessor(set processor.Settings, cfg *Config, next consumer.Traces) (*costRollupProcessor, error) {
	p := &costRollupProcessor{
		cfg:      cfg,
		next:     next,
		logger:   set.Logger,
		now:      time.Now,
		traces:   map[pcommon.TraceID]*traceState{},
		order:    list.New(),
		released: map[pcommon.TraceID]*list.Element{},
		relOrder: list.New(),
		stop:     make(chan struct{}),
		stopped:  make(chan struct{}),
	}
	if cfg.PricesFile != "" {
		book, err := LoadPriceFile(cfg.PricesFile)
		if err != nil {
			return nil, err
		}
		p.book = book
	}
	p.filter = &peerFilter{book: p.book}
	for _, s := range cfg.AwaitPeers {
		re, err := regexp.Compile(s)
		if err != nil {
			return nil, fmt.Errorf("await_peers: %w", err)
		}
		p.filter.await = append(p.filter.await, re)
	}
	for _, s := range cfg.IgnorePeers {
		re, err := regexp.Compile(s)
		if err != nil {
			return nil, fmt.Errorf("ignore_peers: %w", err)
		}
		p.filter.ignore = append(p.filter.ignore, re)
	}
	m, err := newTelemetry(set.TelemetrySettings, p)
	if err != nil {
		return nil, err
	}
	p.metrics = m
	return p, nil
}

func (p *costRollupProcessor) Capabilities() consumer.Capabilities {
	return consumer.Capabilities{MutatesData: true}
}

func (p *costRollupProcessor) Start(context.Context, component.Host) error {
	p.started.Store(true)
	go p.loop()
	return nil
}

func (p *costRollupProcessor) Shutdown(ctx context.Context) error {
	p.once.Do(func() { close(p.stop) })
	if p.started.Load() {
		select {
		case <-p.stopped:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	p.releaseAll(releaseShutdown)
	if p.metrics != nil {
		p.metrics.close()
	}
	return nil
}

func (p *costRollupProcessor) loop() {
	defer close(p.stopped)
	ticker := time.NewTicker(p.cfg.CheckInterval)
	defer ticker.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-ticker.C:
			p.releaseDue()
		}
	}
}

// ConsumeTraces groups the spans by trace into the buffer; nothing goes out from here except
// spans without a trace id (rolled up on their own at once) and traces evicted when full.
func (p *costRollupProcessor) ConsumeTraces(ctx context.Context, td ptrace.Traces) error {
	incoming := td.SpanCount()
	p.metrics.received(ctx, incoming)
	type arriving struct {
		chunks  []chunk
		spans   int
		clients int
		root    bool
	}
	byTrace := map[pcommon.TraceID]*arriving{}
	var orphaned *arriving
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		rs := rss.At(i)
		sss := rs.ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			ss := sss.At(j)
			spans := ss.Spans()
			if spans.Len() == 0 {
				continue
			}
			g := &group{key: groupKey(rs, ss), resource: pcommon.NewResource(), rsSchema: rs.SchemaUrl(),
				scope: pcommon.NewInstrumentationScope(), ssSchema: ss.SchemaUrl()}
			rs.Resource().CopyTo(g.resource)
			ss.Scope().CopyTo(g.scope)
			dest := map[pcommon.TraceID]ptrace.SpanSlice{}
			for k := 0; k < spans.Len(); k++ {
				sp := spans.At(k)
				id := sp.TraceID()
				a := orphaned
				if !id.IsEmpty() {
					a = byTrace[id]
				}
				if a == nil {
					a = &arriving{}
					if id.IsEmpty() {
						orphaned = a
					} else {
						byTrace[id] = a
					}
				}
				out, ok := dest[id]
				if !ok {
					out = ptrace.NewSpanSlice()
					dest[id] = out
					a.chunks = append(a.chunks, chunk{g: g, spans: out})
				}
				if sp.ParentSpanID().IsEmpty() {
					a.root = true
				}
				if sp.Kind() == ptrace.SpanKindClient {
					a.clients++
				}
				a.spans++
				sp.MoveTo(out.AppendEmpty())
			}
		}
	}
	if orphaned != nil {
		// No trace id: nothing to group by. Rolled up alone and passed on now.
		p.emit(ctx, []released{{t: &traceState{chunks: orphaned.chunks, spans: orphaned.spans}, reason: releaseNoTraceID}})
	}
	now := p.now()
	var evicted []released
	p.mu.Lock()
	for id, a := range byTrace {
		for p.spans+a.spans > p.cfg.MaxBufferedSpans && p.order.Len() > 0 {
			oldest := p.order.Front().Value.(*traceState)
			p.removeLocked(oldest)
			evicted = append(evicted, released{t: oldest, reason: releaseBufferFull})
		}
		st, ok := p.traces[id]
		if !ok {
			st = &traceState{id: id, chunks: a.chunks, spans: a.spans, clients: a.clients, firstSeen: now}
			if _, wasReleased := p.released[id]; wasReleased {
				st.late = true
				st.deadline = now.Add(p.cfg.RootWait)
			}
			st.elem = p.order.PushBack(st)
			p.traces[id] = st
		} else {
			st.chunks = append(st.chunks, a.chunks...)
			st.spans += a.spans
			st.clients += a.clients
		}
		p.spans += a.spans
		if a.root && !st.hasRoot {
			st.hasRoot = true
			if !st.late {
				st.deadline = now.Add(p.cfg.RootWait)
			}
		} else if st.waiting {
			// A span arrived for a trace waiting for a child: look again after root_wait.
			st.waiting = false
			st.deadline = now.Add(p.cfg.RootWait)
		}
		heap.Push(&p.heap, heapItem{due: st.due(p.cfg.MaxWait), id: id})
	}
	p.mu.Unlock()
	if len(evicted) > 0 {
		p.emit(ctx, evicted)
	}
	return nil
}

func (p *costRollupProcessor) removeLocked(t *traceState) {
	delete(p.traces, t.id)
	p.order.Remove(t.elem)
	p.spans -= t.spans
	if p.cfg.RememberReleased > 0 {
		if e, ok := p.released[t.id]; ok {
			p.relOrder.MoveToBack(e)
		} else {
			p.released[t.id] = p.relOrder.PushBack(t.id)
			if p.relOrder.Len() > p.cfg.RememberReleased {
				front := p.relOrder.Front()
				delete(p.released, front.Value.(pcommon.TraceID))
				p.relOrder.Remove(front)
			}
		}
	}
}

// releaseDue releases the traces that are due.
func (p *costRollupProcessor) releaseDue() {
	now := p.now()
	var out []released
	p.mu.Lock()
	for len(p.heap) > 0 {
		top := p.heap[0]
		t, ok := p.traces[top.id]
		if !ok || !t.due(p.cfg.MaxWait).Equal(top.due) {
			heap.Pop(&p.heap) // stale
			continue
		}
		if top.due.After(now) {
			break
		}
		heap.Pop(&p.heap)
		hard := !now.Before(t.firstSeen.Add(p.cfg.MaxWait))
		reason := releaseMaxWait
		switch {
		case t.late:
			reason = releaseLate
		case t.hasRoot && !hard:
			if p.cfg.AwaitChildren {
				if _, pending := p.filter.pendingClients(t); pending > 0 {
					t.waiting = true
					t.deadline = time.Time{}
					heap.Push(&p.heap, heapItem{due: t.due(p.cfg.MaxWait), id: t.id})
					continue
				}
			}
			reason = releaseRoot
		case t.hasRoot:
			reason = releaseRoot
		}
		p.removeLocked(t)
		out = append(out, released{t: t, reason: reason})
	}
	p.mu.Unlock()
	if len(out) > 0 {
		p.emit(context.Background(), out)
	}
}

func (p *costRollupProcessor) releaseAll(reason string) {
	var out []released
	p.mu.Lock()
	for _, t := range p.traces {
		r := reason
		if t.late {
			r = releaseLate
		}
		out = append(out, released{t: t, reason: r})
	}
	for _, r := range out {
		p.removeLocked(r.t)
	}
	p.heap = nil
	p.mu.Unlock()
	if len(out) > 0 {
		p.emit(context.Background(), out)
	}
}

// emit rolls each trace up and passes them on in one ptrace.Traces.
func (p *costRollupProcessor) emit(ctx context.Context, traces []released) {
	out := ptrace.NewTraces()
	dests := map[string]ptrace.SpanSlice{}
	for _, r := range traces {
		p.rollupOne(ctx, r)
		for _, c := range r.t.chunks {
			d, ok := dests[c.g.key]
			if !ok {
				rs := out.ResourceSpans().AppendEmpty()
				c.g.resource.CopyTo(rs.Resource())
				rs.SetSchemaUrl(c.g.rsSchema)
				ss := rs.ScopeSpans().AppendEmpty()
				c.g.scope.CopyTo(ss.Scope())
				ss.SetSchemaUrl(c.g.ssSchema)
				d = ss.Spans()
				dests[c.g.key] = d
			}
			c.spans.MoveAndAppendTo(d)
		}
	}
	n := out.SpanCount()
	if n == 0 {
		return
	}
	if err := p.next.ConsumeTraces(ctx, out); err != nil {
		p.metrics.dropped(ctx, n)
		p.logger.Warn("costrollup: the next consumer refused rolled-up spans", zap.Int("spans", n), zap.Error(err))
		return
	}
	p.metrics.releasedSpans(ctx, n)
}

// rollupOne rolls one trace up; a panic in it (a bug, never expected) flags the trace instead of
// losing it or the rest of the batch.
func (p *costRollupProcessor) rollupOne(ctx context.Context, r released) {
	defer func() {
		if rec := recover(); rec != nil {
			p.logger.Error("costrollup: rollup failed; the trace goes out flagged", zap.Any("panic", rec))
			for _, sp := range r.t.spanList() {
				sp.Attributes().PutBool(attrPartial, true)
				sp.Attributes().PutStr(attrPartialReason, "internal_error")
			}
		}
	}()
	opts := traceOptions{book: p.book}
	switch r.reason {
	case releaseLate:
		opts.partialReason = reasonLate
	case releaseBufferFull:
		opts.partialReason = reasonBufferFull
	}
	if p.cfg.AwaitChildren && opts.partialReason == "" && r.reason != releaseNoTraceID {
		opts.missing, _ = p.filter.pendingClients(r.t)
	}
	st := processSpans(r.t.spanList(), opts)
	p.metrics.trace(ctx, r.reason, st, len(opts.missing) > 0)
}

func (p *costRollupProcessor) buffered() (traces, spans int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.traces), p.spans
}
