package costrollupprocessor // import "github.com/otel-costs/otel-costs/collector/costrollupprocessor"

import (
	"context"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Self-metrics, written by hand with the component's MeterProvider (the names and kinds are
// listed in metadata.yaml in mdatagen's layout; mdatagen itself is not run).

const scopeName = "github.com/otel-costs/otel-costs/collector/costrollupprocessor"

type telemetry struct {
	spansReceived  metric.Int64Counter
	spansReleased  metric.Int64Counter
	spansDropped   metric.Int64Counter
	spansPriced    metric.Int64Counter
	spansUnpriced  metric.Int64Counter
	spansInvalid   metric.Int64Counter
	spansDuplicate metric.Int64Counter
	tracesReleased metric.Int64Counter
	tracesPartial  metric.Int64Counter
	registration   metric.Registration
}

func newTelemetry(set component.TelemetrySettings, p *costRollupProcessor) (*telemetry, error) {
	m := set.MeterProvider.Meter(scopeName)
	t := &telemetry{}
	var err error
	counter := func(dst *metric.Int64Counter, name, desc, unit string) {
		if err != nil {
			return
		}
		*dst, err = m.Int64Counter("otelcol_processor_costrollup_"+name, metric.WithDescription(desc), metric.WithUnit(unit))
	}
	counter(&t.spansReceived, "spans_received", "Spans received by the processor.", "{span}")
	counter(&t.spansReleased, "spans_released", "Rolled-up spans accepted by the next consumer.", "{span}")
	counter(&t.spansDropped, "spans_dropped", "Rolled-up spans the next consumer refused (lost).", "{span}")
	counter(&t.spansPriced, "spans_priced", "Spans priced by the processor from prices_file.", "{span}")
	counter(&t.spansUnpriced, "spans_unpriced", "Spans with usage the processor could not price (cost.status=unpriced).", "{span}")
	counter(&t.spansInvalid, "spans_invalid_usage", "Spans whose usage could not be read (cost.status=invalid_usage).", "{span}")
	counter(&t.spansDuplicate, "spans_duplicate", "Spans whose gen_ai.response.id was already counted in the trace.", "{span}")
	counter(&t.tracesReleased, "traces_released", "Traces released, by reason (root, max_wait, late, buffer_full, shutdown, no_trace_id).", "{trace}")
	counter(&t.tracesPartial, "traces_missing_child", "Traces released while a CLIENT span still had no child (root flagged missing_child).", "{trace}")
	if err != nil {
		return nil, err
	}
	tracesBuffered, err := m.Int64ObservableGauge("otelcol_processor_costrollup_traces_buffered",
		metric.WithDescription("Traces held by the processor."), metric.WithUnit("{trace}"))
	if err != nil {
		return nil, err
	}
	spansBuffered, err := m.Int64ObservableGauge("otelcol_processor_costrollup_spans_buffered",
		metric.WithDescription("Spans held by the processor."), metric.WithUnit("{span}"))
	if err != nil {
		return nil, err
	}
	t.registration, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		traces, spans := p.buffered()
		o.ObserveInt64(tracesBuffered, int64(traces))
		o.ObserveInt64(spansBuffered, int64(spans))
		return nil
	}, tracesBuffered, spansBuffered)
	if err != nil {
		return nil, err
	}
	return t, nil
}

func (t *telemetry) received(ctx context.Context, n int)      { t.spansReceived.Add(ctx, int64(n)) }
func (t *telemetry) releasedSpans(ctx context.Context, n int) { t.spansReleased.Add(ctx, int64(n)) }
func (t *telemetry) dropped(ctx context.Context, n int)       { t.spansDropped.Add(ctx, int64(n)) }

// reasonAttrs: one attribute set per release reason, built once.
var reasonAttrs = map[string]metric.AddOption{}

func init() {
	for _, r := range []string{releaseRoot, releaseMaxWait, releaseLate, releaseBufferFull, releaseShutdown, releaseNoTraceID} {
		reasonAttrs[r] = metric.WithAttributeSet(attribute.NewSet(attribute.String("reason", r)))
	}
}

func (t *telemetry) trace(ctx context.Context, reason string, st traceStats, missing bool) {
	opt, ok := reasonAttrs[reason]
	if !ok {
		opt = metric.WithAttributes(attribute.String("reason", reason))
	}
	t.tracesReleased.Add(ctx, 1, opt)
	if missing {
		t.tracesPartial.Add(ctx, 1)
	}
	if st.priced > 0 {
		t.spansPriced.Add(ctx, int64(st.priced))
	}
	if st.unpriced > 0 {
		t.spansUnpriced.Add(ctx, int64(st.unpriced))
	}
	if st.invalid > 0 {
		t.spansInvalid.Add(ctx, int64(st.invalid))
	}
	if st.duplicate > 0 {
		t.spansDuplicate.Add(ctx, int64(st.duplicate))
	}
}

func (t *telemetry) close() {
	if t.registration != nil {
		_ = t.registration.Unregister()
	}
}
