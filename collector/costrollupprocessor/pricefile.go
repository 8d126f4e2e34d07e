// The price file that `otel-costs prices export` writes, read and checked: its JSON shape, the model
// matchers (Python-style regexes bounded in time), decimal rates and their tiers, dated and
// time-of-day price sets. What it parses, PriceBook (prices.go) resolves and pricing.go applies.

package costrollupprocessor // import "github.com/otel-costs/otel-costs/collector/costrollupprocessor"

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/big"
	"regexp"
	"strings"
	"time"

	"github.com/dlclark/regexp2"
)

// compilePyRegex compiles a Python-style regex (genai-prices' patterns use look-arounds, which
// Go's RE2 lacks), bounded in time so a hostile pattern cannot stall the pipeline.
func compilePyRegex(s string) (*regexp2.Regexp, error) {
	re, err := regexp2.Compile(s, regexp2.None)
	if err != nil {
		return nil, err
	}
	re.MatchTimeout = 50 * time.Millisecond
	return re, nil
}

// The price file: see README.md ("Price file") for the exact format.

const (
	priceFileFormat  = "otel-costs-prices"
	priceFileVersion = 1
)

// Price keys this format knows, with their divisor (units per price).
var priceKeyPer = map[string]int64{
	"input_mtok":            1_000_000,
	"cache_read_mtok":       1_000_000,
	"cache_write_mtok":      1_000_000,
	"output_mtok":           1_000_000,
	"output_reasoning_mtok": 1_000_000,
	"requests_kcount":       1_000,
}

type rawPriceFile struct {
	Format          string             `json:"format"`
	Version         int                `json:"version"`
	GeneratedBy     string             `json:"generated_by,omitempty"`
	GeneratedAt     string             `json:"generated_at,omitempty"`
	ProviderAliases map[string]*string `json:"provider_aliases"`
	Overrides       []rawOverride      `json:"overrides"`
	Providers       []rawProvider      `json:"providers"`
}

type rawOverride struct {
	Model    string          `json:"model"`
	Provider *string         `json:"provider"`
	Prices   json.RawMessage `json:"prices"`
}

type rawProvider struct {
	ID                     string          `json:"id"`
	Name                   string          `json:"name,omitempty"`
	APIPattern             string          `json:"api_pattern"`
	ProviderMatch          json.RawMessage `json:"provider_match,omitempty"`
	ModelMatch             json.RawMessage `json:"model_match,omitempty"`
	FallbackModelProviders []string        `json:"fallback_model_providers,omitempty"`
	Models                 []rawModel      `json:"models"`
}

type rawModel struct {
	ID     string          `json:"id"`
	Name   string          `json:"name,omitempty"`
	Match  json.RawMessage `json:"match"`
	Prices json.RawMessage `json:"prices"`
}

// matcher is a compiled match clause (genai-prices' MatchLogic).
type matcher interface{ match(lower string) bool }

type mEquals string
type mStartsWith string
type mEndsWith string
type mContains string
type mRegex struct{ re *regexp2.Regexp }
type mOr []matcher
type mAnd []matcher

func (m mEquals) match(s string) bool     { return s == string(m) }
func (m mStartsWith) match(s string) bool { return strings.HasPrefix(s, string(m)) }
func (m mEndsWith) match(s string) bool   { return strings.HasSuffix(s, string(m)) }
func (m mContains) match(s string) bool   { return strings.Contains(s, string(m)) }
func (m mRegex) match(s string) bool {
	ok, err := m.re.MatchString(s)
	return err == nil && ok
}
func (m mOr) match(s string) bool {
	for _, c := range m {
		if c.match(s) {
			return true
		}
	}
	return false
}
func (m mAnd) match(s string) bool {
	for _, c := range m {
		if !c.match(s) {
			return false
		}
	}
	return true
}

func parseMatch(where string, raw json.RawMessage, depth int) (matcher, error) {
	if depth > 32 {
		return nil, fmt.Errorf("%s: match nested too deep", where)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || len(obj) != 1 {
		return nil, fmt.Errorf("%s: a match clause is an object with exactly one key", where)
	}
	for key, value := range obj {
		switch key {
		case "equals", "starts_with", "ends_with", "contains", "regex":
			var s string
			if err := json.Unmarshal(value, &s); err != nil {
				return nil, fmt.Errorf("%s: %s needs a string", where, key)
			}
			switch key {
			case "equals":
				return mEquals(strings.ToLower(s)), nil
			case "starts_with":
				return mStartsWith(strings.ToLower(s)), nil
			case "ends_with":
				return mEndsWith(strings.ToLower(s)), nil
			case "contains":
				return mContains(strings.ToLower(s)), nil
			default:
				re, err := compilePyRegex(s)
				if err != nil {
					return nil, fmt.Errorf("%s: regex %q: %w", where, s, err)
				}
				return mRegex{re}, nil
			}
		case "or", "and":
			var list []json.RawMessage
			if err := json.Unmarshal(value, &list); err != nil || len(list) == 0 {
				return nil, fmt.Errorf("%s: %s needs a non-empty list of clauses", where, key)
			}
			clauses := make([]matcher, 0, len(list))
			for i, item := range list {
				c, err := parseMatch(fmt.Sprintf("%s.%s[%d]", where, key, i), item, depth+1)
				if err != nil {
					return nil, err
				}
				clauses = append(clauses, c)
			}
			if key == "or" {
				return mOr(clauses), nil
			}
			return mAnd(clauses), nil
		default:
			return nil, fmt.Errorf("%s: unknown match clause %q", where, key)
		}
	}
	return nil, fmt.Errorf("%s: empty match clause", where)
}

// rate is one price key's price (USD per `per` units), with optional input-token tiers.
type rate struct {
	base   *big.Rat
	starts []int64 // ascending
	prices []*big.Rat
	// The same prices as num / 10^exp (fixed[0] base, then the tiers), for the integer fast path.
	fixed []fixedPrice
}

type fixedPrice struct {
	num uint64
	exp int
	ok  bool
}

// parseFixed reads a plain decimal ("2.5", "0.075", "10") as num / 10^exp.
func parseFixed(s string) fixedPrice {
	if strings.ContainsAny(s, "eE") || len(s) > 19 {
		return fixedPrice{}
	}
	whole, frac, _ := strings.Cut(s, ".")
	frac = strings.TrimRight(frac, "0")
	var num uint64
	for _, c := range whole + frac {
		num = num*10 + uint64(c-'0')
	}
	return fixedPrice{num: num, exp: len(frac), ok: len(frac) <= 12}
}

func (r *rate) fixedAt(totalInput int64) fixedPrice {
	for i := len(r.starts) - 1; i >= 0; i-- {
		if totalInput > r.starts[i] {
			return r.fixed[i+1]
		}
	}
	return r.fixed[0]
}

// at is the price for a call with totalInput input tokens (cliff tiers: a tier applies to all
// units when totalInput > its start).
func (r *rate) at(totalInput int64) *big.Rat {
	for i := len(r.starts) - 1; i >= 0; i-- {
		if totalInput > r.starts[i] {
			return r.prices[i]
		}
	}
	return r.base
}

type priceSet struct {
	rates map[string]*rate
	// The same rates by position (rateInput...rateRequests; nil: not priced), for price()
	// without a map look-up per price key.
	byKey [6]*rate
}

// Positions in priceSet.byKey.
const (
	rateInput = iota
	rateCacheRead
	rateCacheWrite
	rateOutput
	rateReasoning
	rateRequests
)

var rateKeys = [6]string{"input_mtok", "cache_read_mtok", "cache_write_mtok", "output_mtok", "output_reasoning_mtok", "requests_kcount"}

type constraint struct {
	kind      int // 0 none, 1 start_date, 2 time of day
	startDate time.Time
	startTOD  time.Duration // since 00:00 UTC
	endTOD    time.Duration
}

func (c *constraint) active(at time.Time) bool {
	switch c.kind {
	case 1:
		at = at.UTC()
		day := time.Date(at.Year(), at.Month(), at.Day(), 0, 0, 0, 0, time.UTC)
		return !day.Before(c.startDate)
	case 2:
		at = at.UTC()
		tod := time.Duration(at.Hour())*time.Hour + time.Duration(at.Minute())*time.Minute +
			time.Duration(at.Second())*time.Second + time.Duration(at.Nanosecond())
		if c.endTOD < c.startTOD {
			return tod >= c.startTOD || tod < c.endTOD
		}
		return c.startTOD <= tod && tod < c.endTOD
	}
	return true
}

type conditional struct {
	constraint constraint
	prices     *priceSet
}

// modelPrices: one price set, or conditional ones (the last active wins; none active: the first).
type modelPrices struct {
	choices []conditional
}

func (m *modelPrices) at(t time.Time) *priceSet {
	for i := len(m.choices) - 1; i >= 0; i-- {
		if m.choices[i].constraint.active(t) {
			return m.choices[i].prices
		}
	}
	return m.choices[0].prices
}

func parseDecimal(where string, raw json.RawMessage) (*big.Rat, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("%s: a price is a decimal string (e.g. \"2.5\")", where)
	}
	if !decimalRe.MatchString(s) {
		return nil, fmt.Errorf("%s: %q is not a non-negative decimal", where, s)
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok || r.Sign() < 0 {
		return nil, fmt.Errorf("%s: %q is not a non-negative decimal", where, s)
	}
	return r, nil
}

func decimalString(raw json.RawMessage) string {
	var s string
	_ = json.Unmarshal(raw, &s)
	return s
}

var decimalRe = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]{1,3})?$`)

func parseRate(where string, raw json.RawMessage) (*rate, error) {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) > 0 && trimmed[0] == '"' {
		d, err := parseDecimal(where, raw)
		if err != nil {
			return nil, err
		}
		return &rate{base: d, fixed: []fixedPrice{parseFixed(decimalString(raw))}}, nil
	}
	var tiered struct {
		Base  json.RawMessage `json:"base"`
		Tiers []struct {
			Start *int64          `json:"start"`
			Price json.RawMessage `json:"price"`
		} `json:"tiers"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&tiered); err != nil {
		return nil, fmt.Errorf("%s: a rate is a decimal string or {\"base\", \"tiers\"}: %v", where, err)
	}
	base, err := parseDecimal(where+".base", tiered.Base)
	if err != nil {
		return nil, err
	}
	r := &rate{base: base, fixed: []fixedPrice{parseFixed(decimalString(tiered.Base))}}
	prev := int64(-1)
	for i, t := range tiered.Tiers {
		w := fmt.Sprintf("%s.tiers[%d]", where, i)
		if t.Start == nil || *t.Start < 0 || *t.Start < prev {
			return nil, fmt.Errorf("%s: start must be an integer >= 0, ascending", w)
		}
		p, err := parseDecimal(w+".price", t.Price)
		if err != nil {
			return nil, err
		}
		prev = *t.Start
		r.starts = append(r.starts, *t.Start)
		r.prices = append(r.prices, p)
		r.fixed = append(r.fixed, parseFixed(decimalString(t.Price)))
	}
	return r, nil
}

func parsePriceSet(where string, raw json.RawMessage) (*priceSet, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, fmt.Errorf("%s: a price set is an object of price keys", where)
	}
	ps := &priceSet{rates: map[string]*rate{}}
	for key, value := range obj {
		if _, ok := priceKeyPer[key]; !ok {
			return nil, fmt.Errorf("%s: unknown price key %q (known: input_mtok, cache_read_mtok, cache_write_mtok, output_mtok, output_reasoning_mtok, requests_kcount)", where, key)
		}
		if string(bytes.TrimSpace(value)) == "null" {
			continue
		}
		r, err := parseRate(where+"."+key, value)
		if err != nil {
			return nil, err
		}
		ps.rates[key] = r
	}
	for i, key := range rateKeys {
		ps.byKey[i] = ps.rates[key]
	}
	return ps, nil
}

var timeOfDayRe = regexp.MustCompile(`^([01][0-9]|2[0-3]):([0-5][0-9])(:([0-5][0-9]))?$`)

func parseTOD(where, s string) (time.Duration, error) {
	m := timeOfDayRe.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("%s: %q is not HH:MM[:SS] (UTC)", where, s)
	}
	var h, mi, sec int
	fmt.Sscanf(m[1], "%d", &h)
	fmt.Sscanf(m[2], "%d", &mi)
	if m[4] != "" {
		fmt.Sscanf(m[4], "%d", &sec)
	}
	return time.Duration(h)*time.Hour + time.Duration(mi)*time.Minute + time.Duration(sec)*time.Second, nil
}

func parseModelPrices(where string, raw json.RawMessage) (*modelPrices, error) {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 {
		return nil, fmt.Errorf("%s: prices missing", where)
	}
	if trimmed[0] == '{' {
		ps, err := parsePriceSet(where, raw)
		if err != nil {
			return nil, err
		}
		return &modelPrices{choices: []conditional{{prices: ps}}}, nil
	}
	var list []struct {
		Constraint *struct {
			StartDate *string `json:"start_date"`
			StartTime *string `json:"start_time"`
			EndTime   *string `json:"end_time"`
		} `json:"constraint"`
		Prices json.RawMessage `json:"prices"`
	}
	if err := json.Unmarshal(raw, &list); err != nil || len(list) == 0 {
		return nil, fmt.Errorf("%s: prices is a price set or a non-empty list of {constraint, prices}", where)
	}
	mp := &modelPrices{}
	for i, item := range list {
		w := fmt.Sprintf("%s[%d]", where, i)
		ps, err := parsePriceSet(w+".prices", item.Prices)
		if err != nil {
			return nil, err
		}
		c := conditional{prices: ps}
		if item.Constraint != nil {
			switch {
			case item.Constraint.StartDate != nil && item.Constraint.StartTime == nil && item.Constraint.EndTime == nil:
				d, err := time.Parse("2006-01-02", *item.Constraint.StartDate)
				if err != nil {
					return nil, fmt.Errorf("%s.constraint.start_date: %q is not YYYY-MM-DD", w, *item.Constraint.StartDate)
				}
				c.constraint = constraint{kind: 1, startDate: d}
			case item.Constraint.StartDate == nil && item.Constraint.StartTime != nil && item.Constraint.EndTime != nil:
				s, err := parseTOD(w+".constraint.start_time", *item.Constraint.StartTime)
				if err != nil {
					return nil, err
				}
				e, err := parseTOD(w+".constraint.end_time", *item.Constraint.EndTime)
				if err != nil {
					return nil, err
				}
				c.constraint = constraint{kind: 2, startTOD: s, endTOD: e}
			default:
				return nil, fmt.Errorf("%s.constraint: either {start_date} or {start_time, end_time}", w)
			}
		}
		mp.choices = append(mp.choices, c)
	}
	return mp, nil
}
