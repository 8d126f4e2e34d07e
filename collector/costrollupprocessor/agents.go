package costrollupprocessor // import "github.com/otel-costs/otel-costs/collector/costrollupprocessor"

import (
	"encoding/json"
	"strings"
	"unicode/utf8"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// Agent from the tree: every span of a trace with a cost.status other than aggregate gets the agent
// it ran under, its parent agent and its workflow, written only when absent, with
// otel_costs.agent.source own/inherited. The rule is docs/conventions.md ("Agent from the tree"),
// the same as the in-process CostRollupExporter (otel_costs); the key lists mirror
// CALL_AGENT_NAME_KEYS, SCOPE_AGENT_NAME_KEYS and SCOPE_WORKFLOW_NAME_KEYS in
// otel_costs/conventions.py.

const (
	attrAgentName     = "gen_ai.agent.name"
	attrAgentID       = "gen_ai.agent.id"
	attrAgentParentID = "agent.parent_id"
	attrWorkflowName  = "workflow.name"
	attrAgentSource   = "otel_costs.agent.source"
	attrOIMetadata    = "metadata"
	attrOIGraphParent = "graph.node.parent_id"

	agentSourceOwn       = "own"
	agentSourceInherited = "inherited"

	maxNameLen     = 256
	maxMetadataLen = 64 << 10
)

var (
	callAgentNameKeys  = []string{attrAgentName, "traceloop.association.properties.lc_agent_name", "agent.name"}
	scopeAgentNameKeys = []string{attrAgentName, "agent.name", "gen_ai.task.name", "traceloop.entity.name"}
	workflowNameKeys   = []string{attrWorkflowName, "traceloop.entity.name"}
	lcAgentNameKeys    = []string{"lc_agent_name", "agent_name"}
)

// cleanName is a name as the rule takes it: a string, stripped, 1 to 256 characters.
func cleanName(v pcommon.Value) (string, bool) {
	if v.Type() != pcommon.ValueTypeStr {
		return "", false
	}
	s := strings.TrimSpace(v.Str())
	if s == "" || utf8.RuneCountInString(s) > maxNameLen {
		return "", false
	}
	return s, true
}

// firstName is the first of keys that holds a name.
func firstName(attrs pcommon.Map, keys []string) (string, bool) {
	for _, k := range keys {
		if v, ok := attrs.Get(k); ok {
			if s, ok := cleanName(v); ok {
				return s, true
			}
		}
	}
	return "", false
}

// metadataAgent reads lc_agent_name / agent_name from an OpenInference metadata JSON object.
func metadataAgent(attrs pcommon.Map) (string, bool) {
	v, ok := attrs.Get(attrOIMetadata)
	if !ok || v.Type() != pcommon.ValueTypeStr || len(v.Str()) > maxMetadataLen || !strings.HasPrefix(v.Str(), "{") {
		return "", false
	}
	var obj map[string]any
	if json.Unmarshal([]byte(v.Str()), &obj) != nil {
		return "", false
	}
	for _, k := range lcAgentNameKeys {
		if s, ok := obj[k].(string); ok {
			if name, ok := cleanName(pcommon.NewValueStr(s)); ok {
				return name, true
			}
		}
	}
	return "", false
}

// ownAgent is the agent a call span names itself.
func ownAgent(attrs pcommon.Map) (string, bool) {
	if s, ok := firstName(attrs, callAgentNameKeys); ok {
		return s, true
	}
	return metadataAgent(attrs)
}

// treeInfo is what the rule reads of each span on the way up, computed once per span (memoized
// from the root down, so a 100,000-deep chain is O(n), not O(n^2)).
type treeInfo struct {
	state      []uint8 // 0: not yet, 1: done
	kind       []opKind
	name       []string // agent/task: its scope agent name; workflow: its workflow name
	upAgent    []int32  // nearest strict ancestor that is a named agent
	upTask     []int32  // nearest strict ancestor that is a named task
	upWorkflow []int32  // nearest strict ancestor that is a named workflow
	// agents: their parent agent by the rule (their own marker, else through the agents above)
	agentParent []string
	parent      []int32 // the first span with the parent's id (-1: none, or itself)
	path        []int32
}

func (t *treeInfo) reset(n int) {
	grow := func(s []int32) []int32 {
		if cap(s) < n {
			return make([]int32, n)
		}
		return s[:n]
	}
	if cap(t.state) < n {
		t.state, t.kind, t.name, t.agentParent = make([]uint8, n), make([]opKind, n), make([]string, n), make([]string, n)
	}
	t.state, t.kind, t.name, t.agentParent = t.state[:n], t.kind[:n], t.name[:n], t.agentParent[:n]
	clear(t.state)
	clear(t.name)
	clear(t.agentParent)
	t.upAgent, t.upTask, t.upWorkflow = grow(t.upAgent), grow(t.upTask), grow(t.upWorkflow)
	t.parent = grow(t.parent)
}

// resolve fills i and every ancestor of it not yet filled. A parent link back into the path being
// climbed (a cycle) ends the climb there, as the Python walk stops at a span it has seen.
func (t *treeInfo) resolve(spans []ptrace.Span, i int32) {
	path := t.path[:0]
	for j := i; j >= 0 && t.state[j] == 0; j = t.parent[j] {
		t.state[j] = 2 // on the path
		path = append(path, j)
	}
	for k := len(path) - 1; k >= 0; k-- {
		x := path[k]
		a := spans[x].Attributes()
		t.kind[x] = spanKindOf(a)
		switch t.kind[x] {
		case opAgent, opTask:
			t.name[x], _ = firstName(a, scopeAgentNameKeys)
		case opWorkflow:
			t.name[x], _ = firstName(a, workflowNameKeys)
		}
		t.upAgent[x], t.upTask[x], t.upWorkflow[x] = -1, -1, -1
		if p := t.parent[x]; p >= 0 && t.state[p] == 1 {
			t.upAgent[x], t.upTask[x], t.upWorkflow[x] = t.upAgent[p], t.upTask[p], t.upWorkflow[p]
			if t.name[p] != "" {
				switch t.kind[p] {
				case opAgent:
					t.upAgent[x] = p
				case opTask:
					t.upTask[x] = p
				case opWorkflow:
					t.upWorkflow[x] = p
				}
			}
		}
		t.agentParent[x] = ""
		if t.kind[x] == opAgent && t.name[x] != "" {
			if own, ok := ownParent(a, t.name[x]); ok {
				t.agentParent[x] = own
			} else if k := t.upAgent[x]; k >= 0 {
				if t.name[k] == t.name[x] {
					t.agentParent[x] = t.agentParent[k]
				} else {
					t.agentParent[x] = agentIDOf(spans[k].Attributes(), t.name[k])
				}
			}
		}
		t.state[x] = 1
	}
	t.path = path
}

// targetStatus: the cost.status values the rule applies to (otel_costs.rollup._agents._TARGETS).
var targetStatus = map[string]bool{"priced": true, "unpriced": true, "partial": true, "invalid_usage": true, "duplicate": true}

// agentsFromTree applies the rule to spans[i] for every i with wants(i); index maps each span id
// to its first span (rollupNodes' index), which parent links follow.
func agentsFromTree(spans []ptrace.Span, nodes []node, index map[pcommon.SpanID]int32, t *treeInfo, wants func(i int) bool) {
	ready := false
	var named map[string]string
	for i := range spans {
		if !wants(i) {
			continue
		}
		if !ready {
			t.reset(len(spans))
			for x := range nodes {
				t.parent[x] = -1
				if nodes[x].hasParent {
					if p, ok := index[nodes[x].parent]; ok && p != int32(x) {
						t.parent[x] = p
					}
				}
			}
			ready = true
		}
		t.resolve(spans, int32(i))
		attrs := spans[i].Attributes()
		agent, source := "", ""
		from := int32(-1) // the span that gave the agent (-1: the span itself)
		if s, ok := ownAgent(attrs); ok {
			agent, source = s, agentSourceOwn
		} else if j := t.upAgent[i]; j >= 0 {
			agent, source, from = t.name[j], agentSourceInherited, j
		} else if j := t.upTask[i]; j >= 0 {
			agent, source, from = t.name[j], agentSourceInherited, j
		}
		parent := ""
		if agent != "" {
			if from >= 0 && t.kind[from] == opAgent {
				parent = t.agentParent[from]
			} else if k := t.upAgent[i]; from < 0 && k >= 0 {
				if t.name[k] == agent {
					parent = t.agentParent[k]
				} else {
					parent = agentIDOf(spans[k].Attributes(), t.name[k])
				}
			}
			if _, has := attrs.Get(attrAgentParentID); parent == "" && !has {
				// Two tracers side by side: the one parent this agent's spans name elsewhere.
				if named == nil {
					named = namedParents(spans)
				}
				parent = named[agent]
			}
		}
		workflow := ""
		if j := t.upWorkflow[i]; j >= 0 {
			workflow = t.name[j]
		}
		putAbsent := func(k, v string) {
			if v == "" {
				return
			}
			if _, ok := attrs.Get(k); !ok {
				attrs.PutStr(k, v)
			}
		}
		putAbsent(attrAgentName, agent)
		putAbsent(attrAgentParentID, parent)
		putAbsent(attrWorkflowName, workflow)
		if source != "" {
			setStr(attrs, attrAgentSource, source)
		}
	}
}

// ownParentKeys: where an agent span names its own parent (otel_costs.rollup._agents._OWN_PARENT_KEYS).
var ownParentKeys = []string{attrAgentParentID, attrOIGraphParent}

// ownParent is the parent agent an agent span names itself, unless it is the agent itself.
func ownParent(attrs pcommon.Map, agent string) (string, bool) {
	for _, k := range ownParentKeys {
		if v, ok := attrs.Get(k); ok {
			if s, ok := cleanName(v); ok && s != agent {
				return s, true
			}
		}
	}
	return "", false
}

// agentIDOf is how a parent agent is named: its gen_ai.agent.id, else its name.
func agentIDOf(attrs pcommon.Map, name string) string {
	if id, ok := firstName(attrs, []string{attrAgentID}); ok {
		return id
	}
	return name
}

// namedParents: per agent name, the one parent its agent spans in the trace name themselves
// ("" when they name different ones: ambiguous), as otel_costs.rollup._agents._named_parents.
func namedParents(spans []ptrace.Span) map[string]string {
	named := map[string]string{}
	ambiguous := map[string]bool{}
	for j := range spans {
		a := spans[j].Attributes()
		if spanKindOf(a) != opAgent {
			continue
		}
		name, ok := firstName(a, scopeAgentNameKeys)
		if !ok {
			continue
		}
		parent, ok := ownParent(a, name)
		if !ok || ambiguous[name] {
			continue
		}
		if prev, seen := named[name]; !seen {
			named[name] = parent
		} else if prev != parent {
			named[name], ambiguous[name] = "", true
		}
	}
	return named
}
