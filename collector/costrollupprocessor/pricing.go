// Pricing one call from its usage with a resolved price set: exact integer nano-USD on the fast path
// (priceFixed, uint64 with overflow checks), big.Rat past it, rounded half to even as Python's
// PriceBook does.

package costrollupprocessor // import "github.com/otel-costs/otel-costs/collector/costrollupprocessor"

import (
	"math"
	"math/big"
	"math/bits"
)

// Usage is the token counts of one call, OpenTelemetry semantics (parts included in totals).
type Usage struct {
	Input, Output, CacheRead, CacheWrite, Reasoning int64
}

// Cost is a priced call: exact parts in USD and the total in whole nano-USD (half-even).
type Cost struct {
	Nanos                                int64
	Input, CacheRead, CacheWrite, Output float64
	Provider, Model, Source              string
}

var nanosPerUSD = big.NewRat(1_000_000_000, 1)

// roundHalfEven rounds r to an integer, half to even.
func roundHalfEven(r *big.Rat) *big.Int {
	num, den := r.Num(), r.Denom()
	q, m := new(big.Int).QuoRem(num, den, new(big.Int))
	// r >= 0 here (prices and counts are non-negative), so q is the floor.
	twice := new(big.Int).Lsh(m, 1)
	switch twice.Cmp(den) {
	case 1:
		q.Add(q, big.NewInt(1))
	case 0:
		if q.Bit(0) == 1 {
			q.Add(q, big.NewInt(1))
		}
	}
	return q
}

// price computes a call's cost from a price set: genai-prices' leaf decomposition (a priced
// cache-read or cache-write unit is taken out of the input count; unpriced parts stay in it),
// cliff tiers by total input tokens, one exact sum, quantized once to nano-USD.
func (ps *priceSet) price(u Usage) (Cost, bool) {
	inputLeaf := u.Input
	if ps.byKey[rateCacheRead] != nil {
		inputLeaf -= u.CacheRead
	}
	if ps.byKey[rateCacheWrite] != nil {
		inputLeaf -= u.CacheWrite
	}
	if inputLeaf < 0 {
		return Cost{}, false
	}
	if c, ok := ps.priceFixed(u, inputLeaf); ok {
		return c, true
	}
	part := func(key string, count int64) *big.Rat {
		r, ok := ps.rates[key]
		if !ok {
			return new(big.Rat)
		}
		p := new(big.Rat).Mul(r.at(u.Input), new(big.Rat).SetInt64(count))
		return p.Quo(p, new(big.Rat).SetInt64(priceKeyPer[key]))
	}
	in := part("input_mtok", inputLeaf)
	cr := part("cache_read_mtok", u.CacheRead)
	cw := part("cache_write_mtok", u.CacheWrite)
	outputLeaf := u.Output
	if _, ok := ps.rates["output_reasoning_mtok"]; ok {
		outputLeaf -= u.Reasoning
	}
	if outputLeaf < 0 {
		return Cost{}, false
	}
	out := part("output_mtok", outputLeaf)
	out.Add(out, part("output_reasoning_mtok", u.Reasoning))
	req := part("requests_kcount", 1)
	total := new(big.Rat).Add(in, cr)
	total.Add(total, cw).Add(total, out).Add(total, req)
	nanos := roundHalfEven(total.Mul(total, nanosPerUSD))
	if !nanos.IsInt64() {
		return Cost{}, false
	}
	f := func(r *big.Rat) float64 { v, _ := r.Float64(); return v }
	return Cost{Nanos: nanos.Int64(), Input: f(in), CacheRead: f(cr), CacheWrite: f(cw), Output: f(out)}, true
}

var pow10 = func() [20]uint64 {
	var p [20]uint64
	p[0] = 1
	for i := 1; i < 20; i++ {
		p[i] = p[i-1] * 10
	}
	return p
}()

// priceFixed is price() on integers: the same exact total and correctly rounded parts, without
// big.Rat, when every number fits (ok=false: use the exact big.Rat path).
func (ps *priceSet) priceFixed(u Usage, inputLeaf int64) (Cost, bool) {
	type term struct {
		p     fixedPrice
		count uint64
		shift int // exp - log10(per / 1e9 nanos)
		perE  int // log10(per)
	}
	var terms [6]term
	var slot [6]int // terms index per part: input, cache read, cache write, output, reasoning, requests
	n := 0
	outputLeaf := u.Output
	if ps.byKey[rateReasoning] != nil {
		outputLeaf -= u.Reasoning
	}
	counts := [6]int64{inputLeaf, u.CacheRead, u.CacheWrite, outputLeaf, u.Reasoning, 1}
	for i, r := range ps.byKey {
		slot[i] = -1
		if r == nil {
			continue
		}
		fp := r.fixedAt(u.Input)
		if !fp.ok || counts[i] < 0 {
			return Cost{}, false
		}
		perE := 6
		if i == rateRequests {
			perE = 3
		}
		terms[n] = term{p: fp, count: uint64(counts[i]), shift: fp.exp + perE - 9, perE: perE}
		slot[i] = n
		n++
	}
	e := 0
	for _, t := range terms[:n] {
		if t.shift > e {
			e = t.shift
		}
	}
	if e > 18 {
		return Cost{}, false
	}
	// nanos * 10^e = sum(num * count * 10^(e - shift)), all in uint64 or give up.
	var sum uint64
	for _, t := range terms[:n] {
		hi, v := bits.Mul64(t.p.num, t.count)
		if hi != 0 {
			return Cost{}, false
		}
		k := e - t.shift
		if k > 19 {
			return Cost{}, false
		}
		hi, v = bits.Mul64(v, pow10[k])
		if hi != 0 {
			return Cost{}, false
		}
		var carry uint64
		sum, carry = bits.Add64(sum, v, 0)
		if carry != 0 {
			return Cost{}, false
		}
	}
	den := pow10[e]
	nanos, rem := sum/den, sum%den
	if twice := 2 * rem; rem > den/2 || (twice == den && nanos&1 == 1) {
		nanos++
	}
	if nanos > math.MaxInt64 {
		return Cost{}, false
	}
	part := func(i int) (float64, bool) {
		if slot[i] < 0 {
			return 0, true
		}
		t := terms[slot[i]]
		hi, num := bits.Mul64(t.p.num, t.count)
		d := t.p.exp + t.perE
		if hi != 0 || num >= 1<<53 || d > 15 {
			return 0, false
		}
		return float64(num) / float64(pow10[d]), true
	}
	var c Cost
	c.Nanos = int64(nanos)
	var ok1, ok2, ok3, ok4, ok5 bool
	c.Input, ok1 = part(0)
	c.CacheRead, ok2 = part(1)
	c.CacheWrite, ok3 = part(2)
	c.Output, ok4 = part(3)
	var reasoning float64
	reasoning, ok5 = part(4)
	if !(ok1 && ok2 && ok3 && ok4 && ok5) {
		return Cost{}, false
	}
	if slot[4] >= 0 {
		// Output is the sum of two parts: exact only through the rational.
		return Cost{}, false
	}
	_ = reasoning
	return c, true
}
