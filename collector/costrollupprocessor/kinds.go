package costrollupprocessor // import "github.com/otel-costs/otel-costs/collector/costrollupprocessor"

import (
	"strings"

	"go.opentelemetry.io/collector/pdata/pcommon"
)

// Span kinds: which spans are model calls and which are agents, workflows, tasks, tools or other
// aggregates. This is the Go mirror of SPAN_KINDS in otel_costs/conventions.py, the source of
// truth (docs/conventions.md, "Span kinds"); kinds_test.go checks every row. The processor asks it
// whether a span's usage is priced or an aggregate (usage.go), whether a usage-less span is a model
// call to flag, and whether a CLIENT span is part of an LLM call (llmish).

type opKind uint8

const (
	opNone      opKind = iota // no marker with a known value: not a model call, not an aggregate
	opModelCall               // one model call: priced
	opAgent
	opWorkflow
	opTask
	opTool
	opAggregate // any other span whose usage sums its children's
)

// aggregate: the span's usage (if any) is the sum of its child calls, never priced.
func (k opKind) aggregate() bool { return k >= opAgent }

// Marker attributes, in the order they are tried.
const (
	markerOperation   = "gen_ai.operation.name"
	markerOISpanKind  = "openinference.span.kind"
	markerTLSpanKind  = "traceloop.span.kind"
	markerTLRequestTy = "llm.request.type"
)

var spanKindMarkers = []struct {
	key    string
	values map[string]opKind
}{
	{markerOperation, map[string]opKind{
		"chat": opModelCall, "text_completion": opModelCall, "generate_content": opModelCall, "embeddings": opModelCall,
		"invoke_agent": opAgent, "create_agent": opAggregate, "invoke_workflow": opWorkflow,
		"execute_task": opTask, "handoff": opTask, "execute_tool": opTool,
	}},
	{markerOISpanKind, map[string]opKind{
		"LLM": opModelCall, "EMBEDDING": opModelCall, "AGENT": opAgent, "CHAIN": opAggregate, "TOOL": opTool,
	}},
	{markerTLSpanKind, map[string]opKind{
		"llm": opModelCall, "workflow": opWorkflow, "agent": opAgent, "task": opTask, "tool": opTool,
	}},
	{markerTLRequestTy, map[string]opKind{"chat": opModelCall, "completion": opModelCall, "embedding": opModelCall}},
}

// markerValue looks a marker's value up as written, then lower-case, then upper-case.
func markerValue(values map[string]opKind, v string) (opKind, bool) {
	if k, ok := values[v]; ok {
		return k, true
	}
	if k, ok := values[strings.ToLower(v)]; ok {
		return k, true
	}
	k, ok := values[strings.ToUpper(v)]
	return k, ok
}

// classify returns the span's kind, given a look-up of its attributes, as otel_costs._kinds.span_kind:
// a span that any marker calls an agent, workflow, task, tool or aggregate is that kind (the
// first such marker decides), even if another marker says model call; else model call if a marker
// says so. Also the marker and value that made it an aggregate ("" otherwise), for the reason.
func classify(get func(string) (pcommon.Value, bool)) (opKind, string, string) {
	found := opNone
	for _, m := range spanKindMarkers {
		v, ok := get(m.key)
		if !ok || v.Type() != pcommon.ValueTypeStr {
			continue
		}
		if k, ok := markerValue(m.values, v.Str()); ok {
			if k != opModelCall {
				return k, m.key, v.Str()
			}
			found = k
		}
	}
	return found, "", ""
}

// spanKindOf is classify over a span's attributes.
func spanKindOf(attrs pcommon.Map) opKind {
	k, _, _ := classify(attrs.Get)
	return k
}
