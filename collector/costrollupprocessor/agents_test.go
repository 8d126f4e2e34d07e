package costrollupprocessor

import (
	"testing"

	"go.opentelemetry.io/collector/pdata/ptrace"
)

// agentTrace builds one trace from (span id, parent id, attributes) rows.
func agentTrace(t *testing.T, rows []struct {
	id, parent uint64
	attrs      map[string]any
}) (ptrace.Traces, map[uint64]ptrace.Span) {
	td := ptrace.NewTraces()
	spans := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans()
	byID := map[uint64]ptrace.Span{}
	for _, r := range rows {
		s := spans.AppendEmpty()
		s.SetTraceID(tid(1))
		s.SetSpanID(spid(r.id))
		if r.parent != 0 {
			s.SetParentSpanID(spid(r.parent))
		}
		if err := s.Attributes().FromRaw(r.attrs); err != nil {
			t.Fatal(err)
		}
		byID[r.id] = s
	}
	return td, byID
}

// TestAgentFromTree: each billable span gets the nearest named agent above it (else a task), the
// next agent of another name as its parent (its gen_ai.agent.id when set) and the workflow, written
// only when absent and marked own/inherited; spans with no agent anywhere get nothing.
func TestAgentFromTree(t *testing.T) {
	priced := func(extra map[string]any) map[string]any {
		m := map[string]any{"cost.status": "priced", "cost.direct_nanos": int64(10)}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	td, s := agentTrace(t, []struct {
		id, parent uint64
		attrs      map[string]any
	}{
		{1, 0, map[string]any{"gen_ai.operation.name": "invoke_workflow", "workflow.name": "trip"}},
		{2, 1, map[string]any{"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "supervisor", "gen_ai.agent.id": "sup-1"}},
		{3, 2, map[string]any{"traceloop.span.kind": "agent", "traceloop.entity.name": "researcher"}},
		{4, 3, map[string]any{"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "researcher"}},
		{5, 4, map[string]any{"gen_ai.operation.name": "handoff", "gen_ai.task.name": "lookup"}},
		{6, 5, priced(nil)}, // inherited: researcher, parent sup-1
		{7, 2, priced(map[string]any{"metadata": `{"lc_agent_name": "writer"}`})}, // own (metadata), parent sup-1
		{8, 1, map[string]any{"gen_ai.operation.name": "execute_task", "traceloop.entity.name": "node_a"}},
		{9, 8, priced(map[string]any{"workflow.name": "kept"})}, // task gives the agent
		{10, 0, map[string]any{"openinference.span.kind": "AGENT", "agent.name": "solo", "graph.node.parent_id": "root_node"}},
		{11, 10, priced(map[string]any{"gen_ai.agent.name": "mine"})},                          // own, parent: the AGENT above
		{12, 10, map[string]any{"openinference.span.kind": "LLM", "cost.status": "aggregate"}}, // not billable: untouched
		{13, 0, priced(nil)}, // no agent anywhere
	})
	processTrace(td, traceOptions{})
	want := map[uint64]map[string]string{
		6:  {attrAgentName: "researcher", attrAgentSource: "inherited", attrAgentParentID: "sup-1", attrWorkflowName: "trip"},
		7:  {attrAgentName: "writer", attrAgentSource: "own", attrAgentParentID: "sup-1", attrWorkflowName: "trip"},
		9:  {attrAgentName: "node_a", attrAgentSource: "inherited", attrWorkflowName: "kept"},
		11: {attrAgentName: "mine", attrAgentSource: "own", attrAgentParentID: "solo"},
		12: {},
		13: {},
	}
	for id, w := range want {
		attrs := s[id].Attributes()
		for _, k := range []string{attrAgentName, attrAgentSource, attrAgentParentID, attrWorkflowName} {
			v, ok := attrs.Get(k)
			got := ""
			if ok {
				got = v.Str()
			}
			if got != w[k] {
				t.Errorf("span %d: %s = %q, want %q", id, k, got, w[k])
			}
		}
	}
}

// TestAgentFromTreeDeepChain: a 100,000-deep chain of agents, each with a priced call below it, is
// resolved in linear time (memoized from the root down), each call getting its own agent's parent.
func TestAgentFromTreeDeepChain(t *testing.T) {
	const depth = 100_000
	td := ptrace.NewTraces()
	spans := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans()
	for i := uint64(1); i <= depth; i++ {
		s := spans.AppendEmpty()
		s.SetTraceID(tid(1))
		s.SetSpanID(spid(i))
		if i > 1 {
			s.SetParentSpanID(spid(i - 1))
		}
		s.Attributes().PutStr("gen_ai.operation.name", "invoke_agent")
		s.Attributes().PutStr("gen_ai.agent.name", "same")
		c := spans.AppendEmpty()
		c.SetTraceID(tid(1))
		c.SetSpanID(spid(depth + i))
		c.SetParentSpanID(spid(i))
		c.Attributes().PutStr("cost.status", "priced")
		c.Attributes().PutInt("cost.direct_nanos", 1)
	}
	processTrace(td, traceOptions{})
	last := spans.At(spans.Len() - 1).Attributes()
	if v, _ := last.Get(attrAgentName); v.Str() != "same" {
		t.Fatalf("deepest call: agent %q", v.Str())
	}
	if _, ok := last.Get(attrAgentParentID); ok {
		t.Fatal("every agent above has the same name: no parent agent")
	}
}
