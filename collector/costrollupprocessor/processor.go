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

// block is the spans of one incoming ScopeSpans, kept where they arrived (no copy): the traces
// in it point at their spans by index. When the last of its traces goes out, the block goes out
// whole; a trace released while others of its block are still held has its spans moved out.
type block struct {
	g       *group
	spans   ptrace.SpanSlice
	pending int    // traces of the block not yet released
	moved   []bool // spans already moved out (nil: none)
}

// chunk is the spans of one trace in one block.
type chunk struct {
	b   *block
	idx []int32
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
	return t.appendSpans(make([]ptrace.Span, 0, t.spans))
}

func (t *traceState) appendSpans(out []ptrace.Span) []ptrace.Span {
	for _, c := range t.chunks {
		for _, i := range c.idx {
			out = append(out, c.b.spans.At(int(i)))
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

	mu     sync.Mutex
	traces map[pcommon.TraceID]*traceState
	order  *list.List
	heap   dueHeap
	spans  int
	// The last remember_released trace ids released, to flag spans that arrive after their
	// trace: a ring of ids and, per id, the sequence number of its latest release. Neither holds
	// a pointer, so the garbage collector never scans them (a list element per trace did).
	released map[pcommon.TraceID]uint64
	relRing  []pcommon.TraceID
	relSeq   uint64

	// emitMu serializes emit: traces released by different goroutines may share a block.
	emitMu sync.Mutex

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
		released: map[pcommon.TraceID]uint64{},
		relRing:  make([]pcommon.TraceID, cfg.RememberReleased),
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
		last    *block // the block of chunks[len-1]: a trace's spans in one block share a chunk
	}
	// Per-trace state in one slice and by position (no struct, map or growing index slice per
	// trace): the map holds positions, each block's span indexes are carved out of one array.
	rss := td.ResourceSpans()
	all := make([]arriving, 0, 16)
	byTrace := make(map[pcommon.TraceID]int32, 16)
	orphaned := -1
	var counts []int32 // spans of each arriving trace in the current block
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
			b := &block{g: g, spans: ptrace.NewSpanSlice()}
			spans.MoveAndAppendTo(b.spans) // moves the span pointers, no copy
			spans = b.spans
			// First pass: which trace each span is in, and how many of this block's spans each has.
			pos := make([]int32, spans.Len())
			counts = counts[:0]
			// A trace's spans usually come one after another (an SDK batches them so): the
			// previous span's trace saves the map look-up.
			var lastID pcommon.TraceID
			lastAI := int32(-1)
			for k := 0; k < spans.Len(); k++ {
				sp := spans.At(k)
				id := sp.TraceID()
				var ai int32
				if lastAI >= 0 && id == lastID {
					ai = lastAI
				} else if id.IsEmpty() {
					if orphaned < 0 {
						orphaned = len(all)
						all = append(all, arriving{})
					}
					ai = int32(orphaned)
				} else if x, ok := byTrace[id]; ok {
					ai = x
				} else {
					ai = int32(len(all))
					byTrace[id] = ai
					all = append(all, arriving{})
				}
				if !id.IsEmpty() {
					lastID, lastAI = id, ai
				}
				pos[k] = ai
				for int(ai) >= len(counts) {
					counts = append(counts, 0)
				}
				counts[ai]++
				a := &all[ai]
				if sp.ParentSpanID().IsEmpty() {
					a.root = true
				}
				if sp.Kind() == ptrace.SpanKindClient {
					a.clients++
				}
				a.spans++
			}
			// Second pass: each trace's chunk of this block gets its slice of one index array.
			arena := make([]int32, 0, spans.Len())
			for k := 0; k < spans.Len(); k++ {
				a := &all[pos[k]]
				if a.last != b {
					a.last = b
					n := int(counts[pos[k]])
					a.chunks = append(a.chunks, chunk{b: b, idx: arena[len(arena) : len(arena) : len(arena)+n]})
					arena = arena[:len(arena)+n]
					b.pending++
				}
				c := &a.chunks[len(a.chunks)-1]
				c.idx = append(c.idx, int32(k))
			}
		}
	}
	if orphaned >= 0 {
		// No trace id: nothing to group by. Rolled up alone and passed on now.
		o := &all[orphaned]
		p.emit(ctx, []released{{t: &traceState{chunks: o.chunks, spans: o.spans}, reason: releaseNoTraceID}})
	}
	now := p.now()
	var evicted []released
	p.mu.Lock()
	for id, ai := range byTrace {
		a := &all[ai]
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
	// Releasing lags by more than a second: this caller waits its turn to help (backpressure).
	lagging := len(p.heap) > 0 && p.heap[0].due.Before(now.Add(-time.Second))
	p.mu.Unlock()
	if len(evicted) > 0 {
		p.emit(ctx, evicted)
	}
	// The caller rolls up about as many due spans as it brought in: the release work is shared by
	// the receivers' goroutines. When another one is at it the caller goes on, unless releasing
	// lags: then it waits, so intake cannot outrun the rollup (backpressure, not a growing window).
	p.releaseSome(2*incoming+64, lagging)
	return nil
}

func (p *costRollupProcessor) removeLocked(t *traceState) {
	delete(p.traces, t.id)
	p.order.Remove(t.elem)
	p.spans -= t.spans
	if n := uint64(len(p.relRing)); n > 0 {
		seq := p.relSeq
		p.relSeq++
		slot := seq % n
		if seq >= n {
			// The slot's id leaves unless it was released again since (its entry is newer).
			if old := p.relRing[slot]; p.released[old] == seq-n {
				delete(p.released, old)
			}
		}
		p.relRing[slot] = t.id
		p.released[t.id] = seq
	}
}

func (p *costRollupProcessor) buffered() (traces, spans int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.traces), p.spans
}
