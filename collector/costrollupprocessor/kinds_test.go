package costrollupprocessor

import (
	"testing"

	"go.opentelemetry.io/collector/pdata/pcommon"
)

// TestSpanKindTable: every row of SPAN_KINDS (otel_costs/conventions.py) gives its kind here, in
// each spelling the classifier accepts; unknown operations are no kind; the first marker with a
// known value decides.
func TestSpanKindTable(t *testing.T) {
	cases := []struct {
		name  string
		attrs map[string]any
		want  opKind
	}{
		{"otel chat", map[string]any{markerOperation: "chat"}, opModelCall},
		{"otel text_completion", map[string]any{markerOperation: "text_completion"}, opModelCall},
		{"otel generate_content", map[string]any{markerOperation: "generate_content"}, opModelCall},
		{"otel embeddings", map[string]any{markerOperation: "embeddings"}, opModelCall},
		{"otel invoke_agent", map[string]any{markerOperation: "invoke_agent"}, opAgent},
		{"otel create_agent", map[string]any{markerOperation: "create_agent"}, opAggregate},
		{"otel invoke_workflow", map[string]any{markerOperation: "invoke_workflow"}, opWorkflow},
		{"otel execute_task", map[string]any{markerOperation: "execute_task"}, opTask},
		{"agents sdk handoff", map[string]any{markerOperation: "handoff"}, opTask},
		{"otel execute_tool", map[string]any{markerOperation: "execute_tool"}, opTool},
		{"openinference LLM", map[string]any{markerOISpanKind: "LLM"}, opModelCall},
		{"openinference EMBEDDING", map[string]any{markerOISpanKind: "EMBEDDING"}, opModelCall},
		{"openinference AGENT", map[string]any{markerOISpanKind: "AGENT"}, opAgent},
		{"openinference CHAIN", map[string]any{markerOISpanKind: "CHAIN"}, opAggregate},
		{"openinference TOOL", map[string]any{markerOISpanKind: "TOOL"}, opTool},
		{"openinference lower-case llm", map[string]any{markerOISpanKind: "llm"}, opModelCall},
		{"traceloop llm", map[string]any{markerTLSpanKind: "llm"}, opModelCall},
		{"traceloop workflow", map[string]any{markerTLSpanKind: "workflow"}, opWorkflow},
		{"traceloop agent", map[string]any{markerTLSpanKind: "agent"}, opAgent},
		{"traceloop task", map[string]any{markerTLSpanKind: "task"}, opTask},
		{"traceloop tool", map[string]any{markerTLSpanKind: "tool"}, opTool},
		{"traceloop upper-case TASK", map[string]any{markerTLSpanKind: "TASK"}, opTask},
		{"openllmetry request type chat", map[string]any{markerTLRequestTy: "chat"}, opModelCall},
		{"openllmetry request type completion", map[string]any{markerTLRequestTy: "completion"}, opModelCall},
		{"openllmetry request type embedding", map[string]any{markerTLRequestTy: "embedding"}, opModelCall},
		{"unknown operation", map[string]any{markerOperation: "rerank"}, opNone},
		{"not a string", map[string]any{markerOperation: int64(1)}, opNone},
		{"no marker", map[string]any{"http.request.method": "POST"}, opNone},
		{"unknown value falls through to the next marker", map[string]any{
			markerOperation: "execute_node", markerTLSpanKind: "llm",
		}, opModelCall},
		{"an aggregate marker wins over a model call", map[string]any{markerOperation: "chat", markerOISpanKind: "AGENT"}, opAgent},
		{"the first aggregate marker decides", map[string]any{markerOperation: "execute_task", markerTLSpanKind: "agent"}, opTask},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			attrs := pcommon.NewMap()
			if err := attrs.FromRaw(tc.attrs); err != nil {
				t.Fatal(err)
			}
			if got := spanKindOf(attrs); got != tc.want {
				t.Fatalf("spanKindOf(%v) = %d, want %d", tc.attrs, got, tc.want)
			}
			if got, want := spanKindOf(attrs).aggregate(), tc.want >= opAgent; got != want {
				t.Fatalf("aggregate() = %v, want %v", got, want)
			}
		})
	}
}

// TestUsageByKind: pricing reads the same table: usage on a task or handoff span is an aggregate,
// a model call by any marker with no usage is flagged, a span of unknown operation with usage is
// priced and one without usage is left alone.
func TestUsageByKind(t *testing.T) {
	cases := []struct {
		name  string
		attrs map[string]any
		want  readingKind
	}{
		{"task with summed usage", map[string]any{markerOperation: "execute_task", "gen_ai.usage.input_tokens": int64(5),
			"gen_ai.usage.output_tokens": int64(1)}, readAggregate},
		{"handoff with summed usage", map[string]any{markerOperation: "handoff", "gen_ai.usage.input_tokens": int64(5),
			"gen_ai.usage.output_tokens": int64(1)}, readAggregate},
		{"traceloop llm without usage", map[string]any{markerTLSpanKind: "llm"}, readMissing},
		{"request type chat without usage", map[string]any{markerTLRequestTy: "chat"}, readMissing},
		{"unknown operation with usage", map[string]any{markerOperation: "rerank", "gen_ai.usage.input_tokens": int64(5),
			"gen_ai.usage.output_tokens": int64(1)}, readBillable},
		{"unknown operation without usage", map[string]any{markerOperation: "rerank"}, readNone},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			attrs := pcommon.NewMap()
			if err := attrs.FromRaw(tc.attrs); err != nil {
				t.Fatal(err)
			}
			var f found
			if viewSpan(attrs, &f); readUsage(&f).kind != tc.want {
				t.Fatalf("readUsage(%v).kind = %d, want %d", tc.attrs, readUsage(&f).kind, tc.want)
			}
		})
	}
}
