package costrollupprocessor

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"testing"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// The shared golden cases (tests/golden at the repository root), generated from the Python
// implementation by tests/golden/regenerate.py: the Go processor must write the same attributes.

const goldenDir = "../../tests/golden"

type goldenCase struct {
	Name          string           `json:"name"`
	Description   string           `json:"description"`
	PartialReason *string          `json:"partial_reason"`
	ResourceSpans json.RawMessage  `json:"resourceSpans"`
	Expected      []goldenExpected `json:"expected"`
}

type goldenExpected struct {
	SpanID     string                     `json:"span_id"`
	Attributes map[string]json.RawMessage `json:"attributes"`
	// Agent: the agent-from-the-tree attributes the span must carry (docs/conventions.md).
	Agent map[string]json.RawMessage `json:"agent"`
}

func loadGoldenBook(t testing.TB) *PriceBook {
	t.Helper()
	book, err := LoadPriceFile(filepath.Join(goldenDir, "prices.json"))
	if err != nil {
		t.Fatal(err)
	}
	return book
}

func loadGolden(t testing.TB) []goldenCase {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(goldenDir, "cases", "*.json"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no golden cases in %s: %v", goldenDir, err)
	}
	sort.Strings(paths)
	var out []goldenCase
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var c goldenCase
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		if err := dec.Decode(&c); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		out = append(out, c)
	}
	return out
}

func goldenTraces(t testing.TB, c goldenCase) ptrace.Traces {
	t.Helper()
	doc := append(append([]byte(`{"resourceSpans":`), c.ResourceSpans...), '}')
	td, err := (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(doc)
	if err != nil {
		t.Fatalf("%s: %v", c.Name, err)
	}
	return td
}

// sameValue compares a pdata value with the JSON the Python side wrote.
func sameValue(v pcommon.Value, raw json.RawMessage) bool {
	var any any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&any); err != nil {
		return false
	}
	switch v.Type() {
	case pcommon.ValueTypeStr:
		s, ok := any.(string)
		return ok && s == v.Str()
	case pcommon.ValueTypeBool:
		b, ok := any.(bool)
		return ok && b == v.Bool()
	case pcommon.ValueTypeInt:
		n, ok := any.(json.Number)
		if !ok {
			return false
		}
		i, err := strconv.ParseInt(string(n), 10, 64)
		return err == nil && i == v.Int()
	case pcommon.ValueTypeDouble:
		switch x := any.(type) {
		case json.Number:
			f, err := strconv.ParseFloat(string(x), 64)
			return err == nil && f == v.Double()
		case string:
			return (x == "nan" && math.IsNaN(v.Double())) || (x == "inf" && math.IsInf(v.Double(), 1))
		}
	}
	return false
}

func costAttributes(sp ptrace.Span) map[string]pcommon.Value {
	out := map[string]pcommon.Value{}
	sp.Attributes().Range(func(k string, v pcommon.Value) bool {
		if isCostKey(k) || k == "gen_ai.usage.cost" {
			out[k] = v
		}
		return true
	})
	return out
}

func TestGoldenCases(t *testing.T) {
	book := loadGoldenBook(t)
	for _, c := range loadGolden(t) {
		t.Run(c.Name, func(t *testing.T) {
			td := goldenTraces(t, c)
			opts := traceOptions{book: book}
			if c.PartialReason != nil {
				opts.partialReason = *c.PartialReason
			}
			processTrace(td, opts)
			spans := collectSpans(td)
			if len(spans) != len(c.Expected) {
				t.Fatalf("%d spans, %d expected", len(spans), len(c.Expected))
			}
			for i, sp := range spans {
				want := c.Expected[i]
				if got := sp.SpanID(); hexID(got) != want.SpanID {
					t.Fatalf("span %d: id %s, expected %s", i, hexID(got), want.SpanID)
				}
				got := costAttributes(sp)
				for k, raw := range want.Attributes {
					v, ok := got[k]
					if !ok {
						t.Errorf("span %d (%s): missing %s = %s", i, want.SpanID, k, raw)
						continue
					}
					if !sameValue(v, raw) {
						t.Errorf("span %d (%s): %s = %v, expected %s", i, want.SpanID, k, v.AsRaw(), raw)
					}
				}
				for k, v := range got {
					if _, ok := want.Attributes[k]; !ok {
						t.Errorf("span %d (%s): unexpected %s = %v", i, want.SpanID, k, v.AsRaw())
					}
				}
				for k, raw := range want.Agent {
					v, ok := sp.Attributes().Get(k)
					if !ok {
						t.Errorf("span %d (%s): missing agent attribute %s = %s", i, want.SpanID, k, raw)
					} else if !sameValue(v, raw) {
						t.Errorf("span %d (%s): agent attribute %s = %v, expected %s", i, want.SpanID, k, v.AsRaw(), raw)
					}
				}
			}
		})
	}
}

func hexID(id pcommon.SpanID) string {
	const digits = "0123456789abcdef"
	b := make([]byte, 16)
	for i, x := range id {
		b[2*i], b[2*i+1] = digits[x>>4], digits[x&15]
	}
	return string(b)
}
