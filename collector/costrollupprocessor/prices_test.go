package costrollupprocessor

import (
	"math/big"
	"math/rand"
	"strings"
	"testing"
	"time"
)

// The integer fast path gives exactly what the big.Rat path gives, for every price set in the
// golden price file and random usage.
func TestFixedPathMatchesRational(t *testing.T) {
	book := loadGoldenBook(t)
	rng := rand.New(rand.NewSource(1))
	checked := 0
	for _, p := range book.providers {
		for _, m := range p.models {
			for _, c := range m.prices.choices {
				for k := 0; k < 50; k++ {
					in := rng.Int63n(2_000_000)
					if k%10 == 0 {
						in = rng.Int63n(maxTokens)
					}
					u := Usage{Input: in, Output: rng.Int63n(100_000)}
					u.CacheRead = rng.Int63n(in/2 + 1)
					u.CacheWrite = rng.Int63n(in/2 + 1)
					u.Reasoning = rng.Int63n(u.Output + 1)
					leaf := u.Input
					if _, ok := c.prices.rates["cache_read_mtok"]; ok {
						leaf -= u.CacheRead
					}
					if _, ok := c.prices.rates["cache_write_mtok"]; ok {
						leaf -= u.CacheWrite
					}
					fast, ok := c.prices.priceFixed(u, leaf)
					if !ok {
						continue
					}
					slow := slowPrice(c.prices, u)
					if fast != slow {
						t.Fatalf("%s/%s %+v: fast %+v, exact %+v", p.id, m.id, u, fast, slow)
					}
					checked++
				}
			}
		}
	}
	if checked < 1000 {
		t.Fatalf("only %d checked", checked)
	}
}

// slowPrice is price() without the fast path.
func slowPrice(ps *priceSet, u Usage) Cost {
	inputLeaf := u.Input
	if _, ok := ps.rates["cache_read_mtok"]; ok {
		inputLeaf -= u.CacheRead
	}
	if _, ok := ps.rates["cache_write_mtok"]; ok {
		inputLeaf -= u.CacheWrite
	}
	outputLeaf := u.Output
	if _, ok := ps.rates["output_reasoning_mtok"]; ok {
		outputLeaf -= u.Reasoning
	}
	part := func(key string, count int64) *big.Rat {
		r, ok := ps.rates[key]
		if !ok {
			return new(big.Rat)
		}
		v := new(big.Rat).Mul(r.at(u.Input), new(big.Rat).SetInt64(count))
		return v.Quo(v, new(big.Rat).SetInt64(priceKeyPer[key]))
	}
	in, cr, cw := part("input_mtok", inputLeaf), part("cache_read_mtok", u.CacheRead), part("cache_write_mtok", u.CacheWrite)
	out := part("output_mtok", outputLeaf)
	out.Add(out, part("output_reasoning_mtok", u.Reasoning))
	total := new(big.Rat).Add(in, cr)
	total.Add(total, cw).Add(total, out).Add(total, part("requests_kcount", 1))
	f := func(r *big.Rat) float64 { v, _ := r.Float64(); return v }
	return Cost{Nanos: roundHalfEven(total.Mul(total, nanosPerUSD)).Int64(), Input: f(in), CacheRead: f(cr), CacheWrite: f(cw), Output: f(out)}
}

func TestRoundHalfEven(t *testing.T) {
	for _, tc := range []struct {
		num, den int64
		want     int64
	}{{5, 2, 2}, {7, 2, 4}, {1, 2, 0}, {3, 2, 2}, {11, 10, 1}, {16, 10, 2}, {0, 1, 0}} {
		if got := roundHalfEven(big.NewRat(tc.num, tc.den)).Int64(); got != tc.want {
			t.Errorf("%d/%d: %d, want %d", tc.num, tc.den, got, tc.want)
		}
	}
}

// The hand-made sample price file (testdata/prices.json, documented in README.md).
func TestSamplePriceFile(t *testing.T) {
	book, err := LoadPriceFile("testdata/prices.json")
	if err != nil {
		t.Fatal(err)
	}
	may := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	july := time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)
	night := time.Date(2026, 7, 1, 2, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name                   string
		provider, server, mdl  string
		u                      Usage
		at                     time.Time
		nanos                  int64
		wantProvider, wantModl string
		reason                 string
	}{
		// 1000 x $2.50 + 100 x $10 per 1M = $0.0035.
		{"openai by name", "openai", "", "gpt-4o", Usage{Input: 1000, Output: 100}, may, 3_500_000, "openai", "gpt-4o", ""},
		// Cached input: 600 uncached x 2.5 + 400 x 1.25 + 100 x 10 = 1500 + 500 + 1000 (x1e-6 $).
		{"cache read", "openai", "", "gpt-4o-2024-08-06", Usage{Input: 1000, Output: 100, CacheRead: 400}, may, 3_000_000, "openai", "gpt-4o", ""},
		{"by server address", "", "api.openai.com", "gpt-4o", Usage{Input: 1000, Output: 100}, may, 3_500_000, "openai", "gpt-4o", ""},
		{"alias and fallback provider", "azure.ai.openai", "", "gpt-4o", Usage{Input: 1000, Output: 100}, may, 3_500_000, "azure", "gpt-4o", ""},
		{"model match picks provider", "", "", "claude-sonnet-4-5", Usage{Input: 1000, Output: 100}, may, 4_500_000, "anthropic", "claude-sonnet-4-5", ""},
		// Anthropic cache write at $3.75, read at $0.30: 500x3 + 300x3.75 + 200x0.3 + 100x15.
		{"cache write", "anthropic", "", "claude-sonnet-4-5-20250929", Usage{Input: 1000, Output: 100, CacheWrite: 300, CacheRead: 200}, may, 4_185_000, "anthropic", "claude-sonnet-4-5", ""},
		// Tier: above 200k input tokens all tokens take $6 / $22.50.
		{"tier", "anthropic", "", "claude-sonnet-4-5", Usage{Input: 200_001, Output: 1000}, may, 1_222_506_000, "anthropic", "claude-sonnet-4-5", ""},
		{"dated price, before", "", "", "acme-large", Usage{Input: 1_000_000, Output: 0}, may, 2_000_000_000, "", "acme-large", ""},
		{"dated price, after", "", "", "acme-large", Usage{Input: 1_000_000, Output: 0}, july, 1_500_000_000, "", "acme-large", ""},
		{"time of day", "", "", "acme-large", Usage{Input: 1_000_000, Output: 0}, night, 750_000_000, "", "acme-large", ""},
		{"override restricted to a provider, other provider", "anthropic", "", "house-model", Usage{Input: 10, Output: 1}, may, 0, "", "",
			"no price for model 'house-model' (provider 'anthropic') in genai-prices; add a price override"},
		{"override restricted to a provider", "openai", "", "house-model", Usage{Input: 1_000_000, Output: 1_000_000}, may, 1_500_000_000, "openai", "house-model", ""},
		{"provider without prices", "ollama", "", "llama3", Usage{Input: 1, Output: 1}, may, 0, "", "",
			"genai-prices has no prices for provider 'ollama'; add a price override for model 'llama3'"},
		{"local server is never guessed", "", "http://127.0.0.1:11434/v1", "gpt-4o", Usage{Input: 1, Output: 1}, may, 0, "", "",
			"no price for model 'gpt-4o' (no provider name, server 'http://127.0.0.1:11434/v1') in genai-prices; add a price override"},
		{"litellm prefix", "", "", "openai/gpt-4o", Usage{Input: 1000, Output: 100}, may, 3_500_000, "openai", "gpt-4o", ""},
		{"compact date", "openai", "", "gpt-4o-20240806", Usage{Input: 1000, Output: 100}, may, 3_500_000, "openai", "gpt-4o", ""},
		{"regex with look-ahead", "openai", "", "o3-pro", Usage{Input: 1000, Output: 100}, may, 0, "", "",
			"no price for model 'o3-pro' (provider 'openai') in genai-prices; add a price override"},
		{"regex with look-ahead matches", "openai", "", "o3", Usage{Input: 1000, Output: 100}, may, 2_800_000, "openai", "o3", ""},
		{"no model", "openai", "", "", Usage{Input: 1, Output: 1}, may, 0, "", "", "the span has no model name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, reason, ok := book.Price(tc.provider, tc.server, tc.mdl, tc.u, tc.at)
			if tc.reason != "" {
				if ok || reason != tc.reason {
					t.Fatalf("ok=%v reason %q", ok, reason)
				}
				return
			}
			if !ok || c.Nanos != tc.nanos || c.Provider != tc.wantProvider || c.Model != tc.wantModl {
				t.Fatalf("ok=%v %+v %q", ok, c, reason)
			}
		})
	}
}

func TestPriceFileErrors(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{`{}`, "format must be"},
		{`{"format":"otel-costs-prices","version":2}`, "version 2 not supported"},
		{`{"format":"otel-costs-prices","version":1,"extra":1}`, "unknown field"},
		{`{"format":"otel-costs-prices","version":1,"providers":[{"id":"a","api_pattern":"x","models":[{"id":"m","match":{"equals":"m"},"prices":{"input_mtok":2}}]}]}`, "decimal string"},
		{`{"format":"otel-costs-prices","version":1,"providers":[{"id":"a","api_pattern":"x","models":[{"id":"m","match":{"equals":"m"},"prices":{"input_mtok":"-2"}}]}]}`, "not a non-negative decimal"},
		{`{"format":"otel-costs-prices","version":1,"providers":[{"id":"a","api_pattern":"x","models":[{"id":"m","match":{"equals":"m"},"prices":{"audio_mtok":"2"}}]}]}`, "unknown price key"},
		{`{"format":"otel-costs-prices","version":1,"providers":[{"id":"a","api_pattern":"x","models":[{"id":"m","match":{"like":"m"},"prices":{}}]}]}`, "unknown match clause"},
		{`{"format":"otel-costs-prices","version":1,"providers":[{"id":"a","api_pattern":"x","models":[{"id":"m","match":{"equals":"m"},"prices":{"input_mtok":{"base":"1","tiers":[{"start":5,"price":"1"},{"start":4,"price":"2"}]}}}]}]}`, "ascending"},
		{`{"format":"otel-costs-prices","version":1,"providers":[{"id":"a","api_pattern":"x","models":[{"id":"m","match":{"equals":"m"},"prices":[{"constraint":{"start_date":"2026-13-01"},"prices":{}}]}]}]}`, "not YYYY-MM-DD"},
		{`{"format":"otel-costs-prices","version":1,"providers":[{"id":"a","api_pattern":"(","models":[]}]}`, "api_pattern"},
		{`{"format":"otel-costs-prices","version":1,"overrides":[{"model":"","prices":{}}]}`, "model missing"},
	} {
		_, err := ParsePriceFile([]byte(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.doc, err, tc.want)
		}
	}
}
