// Releasing held traces: which are due (root_wait after their root, max_wait at the latest, a
// trace waiting for a child of a CLIENT span), rolling each up (rollupOne: a panic flags the
// trace, never loses it) and handing them on grouped by resource and scope, blocks moved whole.

package costrollupprocessor // import "github.com/otel-costs/otel-costs/collector/costrollupprocessor"

import (
	"container/heap"
	"context"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/zap"
)

// releaseDue releases every trace that is due, in batches of at most maxReleaseSpans.
func (p *costRollupProcessor) releaseDue() {
	for p.releaseSome(maxReleaseSpans, true) {
	}
}

// maxReleaseSpans bounds the spans handed on in one ConsumeTraces call (and rolled up by one
// caller at a time).
const maxReleaseSpans = 8192

// releaseSome releases due traces up to about budget spans; true if more may be due. Without
// wait it gives up at once when another goroutine is releasing.
func (p *costRollupProcessor) releaseSome(budget int, wait bool) bool {
	if wait {
		p.emitMu.Lock()
	} else if !p.emitMu.TryLock() {
		return false
	}
	defer p.emitMu.Unlock()
	now := p.now()
	var out []released
	taken := 0
	more := false
	p.mu.Lock()
	for len(p.heap) > 0 {
		if taken >= budget {
			more = true
			break
		}
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
		taken += t.spans
	}
	p.mu.Unlock()
	if len(out) > 0 {
		p.emitLocked(context.Background(), out)
	}
	return more
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

// emit rolls each trace up and passes them on.
func (p *costRollupProcessor) emit(ctx context.Context, traces []released) {
	p.emitMu.Lock()
	defer p.emitMu.Unlock()
	p.emitLocked(ctx, traces)
}

// emitLocked is emit with emitMu held.
func (p *costRollupProcessor) emitLocked(ctx context.Context, traces []released) {
	out := ptrace.NewTraces()
	dests := map[string]ptrace.SpanSlice{}
	dest := func(g *group) ptrace.SpanSlice {
		d, ok := dests[g.key]
		if !ok {
			rs := out.ResourceSpans().AppendEmpty()
			g.resource.CopyTo(rs.Resource())
			rs.SetSchemaUrl(g.rsSchema)
			ss := rs.ScopeSpans().AppendEmpty()
			g.scope.CopyTo(ss.Scope())
			ss.SetSchemaUrl(g.ssSchema)
			d = ss.Spans()
			dests[g.key] = d
		}
		return d
	}
	// How many of each block's held traces go out now: a block all of whose traces go goes whole.
	going := map[*block]int{}
	for _, r := range traces {
		for _, c := range r.t.chunks {
			going[c.b]++
		}
	}
	pending := 0
	for _, r := range traces {
		if pending > 0 && pending+r.t.spans > maxReleaseSpans {
			p.send(ctx, out)
			out, dests, pending = ptrace.NewTraces(), map[string]ptrace.SpanSlice{}, 0
		}
		pending += r.t.spans
		p.rollupOne(ctx, r)
		for _, c := range r.t.chunks {
			b := c.b
			if going[b] >= b.pending {
				// The block's last trace: it goes whole (its spans moved out before are removed).
				going[b]--
				b.pending--
				if b.pending > 0 {
					continue // another trace of this release set finishes it
				}
				if b.moved != nil {
					i := 0
					b.spans.RemoveIf(func(ptrace.Span) bool { m := b.moved[i]; i++; return m })
				}
				b.spans.MoveAndAppendTo(dest(b.g))
				continue
			}
			// Others in the block are still held: move this trace's spans out.
			d := dest(b.g)
			if b.moved == nil {
				b.moved = make([]bool, b.spans.Len())
			}
			for _, i := range c.idx {
				b.spans.At(int(i)).MoveTo(d.AppendEmpty())
				b.moved[i] = true
			}
			going[b]--
			b.pending--
		}
	}
	p.send(ctx, out)
}

func (p *costRollupProcessor) send(ctx context.Context, out ptrace.Traces) {
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
	sc := getScratch()
	sc.spans = r.t.appendSpans(sc.spans[:0])
	st := processSpans(sc.spans, opts, sc)
	putScratch(sc)
	p.metrics.trace(ctx, r.reason, st, len(opts.missing) > 0)
}
