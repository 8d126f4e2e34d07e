package costrollupprocessor

import (
	"testing"

	"go.opentelemetry.io/collector/pdata/pcommon"
)

// TestLLMish: which spans count as (part of) an LLM or database call, so that a CLIENT span below
// them is not awaited. Agent, workflow, task and tool spans never count, whatever rollup figures
// or summed usage they carry (the in-process rollup writes cost.children/cost.total on them).
func TestLLMish(t *testing.T) {
	cases := []struct {
		name  string
		attrs map[string]any
		want  bool
	}{
		{"chat call", map[string]any{"gen_ai.operation.name": "chat"}, true},
		{"embeddings", map[string]any{"gen_ai.operation.name": "embeddings"}, true},
		{"openinference LLM", map[string]any{"openinference.span.kind": "LLM"}, true},
		{"usage only", map[string]any{"gen_ai.usage.input_tokens": int64(10)}, true},
		{"model only (HTTP span of an SDK call)", map[string]any{"gen_ai.request.model": "gpt-4o"}, true},
		{"priced in-process", map[string]any{"cost.status": "priced", "cost.direct_nanos": int64(5)}, true},
		{"database", map[string]any{"db.system.name": "postgresql"}, true},
		{"agent with rollup figures", map[string]any{
			"gen_ai.operation.name": "invoke_agent", "cost.children_nanos": int64(5), "cost.total_nanos": int64(5),
		}, false},
		{"workflow", map[string]any{"gen_ai.operation.name": "invoke_workflow", "cost.total_nanos": int64(9)}, false},
		{"rollup figures alone", map[string]any{"cost.total_nanos": int64(9), "cost.rollup.scope": "process"}, false},
		{"openinference agent with summed usage", map[string]any{
			"openinference.span.kind": "AGENT", "llm.token_count.prompt": int64(10),
		}, false},
		{"traceloop task", map[string]any{"traceloop.span.kind": "task", "gen_ai.usage.prompt_tokens": int64(3)}, false},
		{"aggregate status", map[string]any{"cost.status": "aggregate", "gen_ai.usage.input_tokens": int64(3)}, false},
		{"openllmetry task (a LangGraph node)", map[string]any{"gen_ai.operation.name": "execute_task"}, false},
		{"agents sdk handoff", map[string]any{"gen_ai.operation.name": "handoff"}, false},
		{"traceloop llm", map[string]any{"traceloop.span.kind": "llm"}, true},
		{"openllmetry request type", map[string]any{"llm.request.type": "chat"}, true},
		{"unknown operation alone", map[string]any{"gen_ai.operation.name": "rerank"}, false},
		{"plain HTTP", map[string]any{"http.request.method": "POST", "server.address": "agent-b"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			attrs := pcommon.NewMap()
			if err := attrs.FromRaw(tc.attrs); err != nil {
				t.Fatal(err)
			}
			if got := llmish(attrs); got != tc.want {
				t.Fatalf("llmish(%v) = %v, want %v", tc.attrs, got, tc.want)
			}
		})
	}
}
