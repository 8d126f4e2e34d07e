package costrollupprocessor // import "github.com/otel-costs/otel-costs/collector/costrollupprocessor"

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"math/bits"
	"net"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
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

type model struct {
	id     string
	match  matcher
	prices *modelPrices
}

type provider struct {
	id            string
	apiPattern    *regexp2.Regexp
	providerMatch matcher
	modelMatch    matcher
	fallback      []string
	models        []*model
}

type override struct {
	model    string
	provider string // normalized; "" = any
	prices   *modelPrices
}

// PriceBook prices LLM calls from a price file; safe for concurrent use.
type PriceBook struct {
	aliases   map[string]*string
	overrides map[string]*override
	providers []*provider

	mu   sync.Mutex
	memo map[resolveKey]resolved
}

type resolveKey struct{ provider, server, model string }

// resolved: a model entry (prices non-nil) or the reason it is unpriced.
type resolved struct {
	prices   *modelPrices
	provider string
	model    string
	source   string
	reason   string
}

const maxMemo = 10_000

// LoadPriceFile reads and validates a price file.
func LoadPriceFile(path string) (*PriceBook, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("prices_file: %w", err)
	}
	book, err := ParsePriceFile(data)
	if err != nil {
		return nil, fmt.Errorf("prices_file %s: %w", path, err)
	}
	return book, nil
}

// ParsePriceFile parses a price file's bytes.
func ParsePriceFile(data []byte) (*PriceBook, error) {
	var raw rawPriceFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("not a price file: %w", err)
	}
	if raw.Format != priceFileFormat {
		return nil, fmt.Errorf("format must be %q, got %q", priceFileFormat, raw.Format)
	}
	if raw.Version != priceFileVersion {
		return nil, fmt.Errorf("version %d not supported (this processor reads version %d)", raw.Version, priceFileVersion)
	}
	book := &PriceBook{aliases: map[string]*string{}, overrides: map[string]*override{}, memo: map[resolveKey]resolved{}}
	for k, v := range raw.ProviderAliases {
		book.aliases[strings.ToLower(strings.TrimSpace(k))] = v
	}
	seen := map[string]bool{}
	for i, p := range raw.Providers {
		where := fmt.Sprintf("providers[%d]", i)
		if p.ID == "" || seen[p.ID] {
			return nil, fmt.Errorf("%s: id missing or repeated", where)
		}
		seen[p.ID] = true
		prov := &provider{id: p.ID, fallback: p.FallbackModelProviders}
		if p.APIPattern != "" {
			re, err := compilePyRegex(`\A(?:` + p.APIPattern + `)`)
			if err != nil {
				return nil, fmt.Errorf("%s.api_pattern: %w", where, err)
			}
			prov.apiPattern = re
		}
		var err error
		if len(p.ProviderMatch) > 0 && string(p.ProviderMatch) != "null" {
			if prov.providerMatch, err = parseMatch(where+".provider_match", p.ProviderMatch, 0); err != nil {
				return nil, err
			}
		}
		if len(p.ModelMatch) > 0 && string(p.ModelMatch) != "null" {
			if prov.modelMatch, err = parseMatch(where+".model_match", p.ModelMatch, 0); err != nil {
				return nil, err
			}
		}
		for j, m := range p.Models {
			mw := fmt.Sprintf("%s.models[%d]", where, j)
			if m.ID == "" {
				return nil, fmt.Errorf("%s: id missing", mw)
			}
			mm, err := parseMatch(mw+".match", m.Match, 0)
			if err != nil {
				return nil, err
			}
			mp, err := parseModelPrices(mw+".prices", m.Prices)
			if err != nil {
				return nil, err
			}
			prov.models = append(prov.models, &model{id: m.ID, match: mm, prices: mp})
		}
		book.providers = append(book.providers, prov)
	}
	for i, o := range raw.Overrides {
		where := fmt.Sprintf("overrides[%d]", i)
		name := strings.ToLower(strings.TrimSpace(o.Model))
		if name == "" {
			return nil, fmt.Errorf("%s: model missing", where)
		}
		mp, err := parseModelPrices(where+".prices", o.Prices)
		if err != nil {
			return nil, err
		}
		ov := &override{model: strings.TrimSpace(o.Model), prices: mp}
		if o.Provider != nil && strings.TrimSpace(*o.Provider) != "" {
			ov.provider = book.normalizeProviderName(*o.Provider)
		}
		book.overrides[name] = ov // a later entry for the same model wins
	}
	return book, nil
}

func (b *PriceBook) findProviderByID(id string) *provider {
	id = strings.ToLower(strings.TrimSpace(id))
	for _, p := range b.providers {
		if p.id == id {
			return p
		}
	}
	for _, p := range b.providers {
		if p.providerMatch != nil && p.providerMatch.match(id) {
			return p
		}
	}
	return nil
}

func (b *PriceBook) providerForServer(server string) *provider {
	server = strings.TrimSpace(server)
	url := server
	if !strings.Contains(server, "://") {
		url = "https://" + server + "/"
	}
	for _, p := range b.providers {
		if p.apiPattern == nil {
			continue
		}
		if ok, err := p.apiPattern.MatchString(url); err == nil && ok {
			return p
		}
	}
	return nil
}

func (b *PriceBook) providerByIDExact(id string) *provider {
	for _, p := range b.providers {
		if p.id == id {
			return p
		}
	}
	return nil
}

var compactDateRe = regexp.MustCompile(`-(20\d{2})(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])(-|:|$)`)

// normalizeCompactDate rewrites "-20251211" to "-2025-12-11" (genai-prices' fallback).
func normalizeCompactDate(ref string) string {
	var out strings.Builder
	last := 0
	for start := 0; start < len(ref); {
		loc := compactDateRe.FindStringSubmatchIndex(ref[start:])
		if loc == nil {
			break
		}
		for i := range loc {
			if loc[i] >= 0 {
				loc[i] += start
			}
		}
		y, mo, d := ref[loc[2]:loc[3]], ref[loc[4]:loc[5]], ref[loc[6]:loc[7]]
		end := loc[7] // the lookahead character is not consumed
		repl := ref[loc[0]:end]
		if t, err := time.Parse("20060102", y+mo+d); err == nil && t.Format("20060102") == y+mo+d {
			repl = "-" + y + "-" + mo + "-" + d
		}
		out.WriteString(ref[last:loc[0]])
		out.WriteString(repl)
		last = end
		start = end
	}
	out.WriteString(ref[last:])
	return out.String()
}

func (p *provider) matchModel(b *PriceBook, ref string, fallback bool) *model {
	for _, m := range p.models {
		if m.match.match(ref) {
			return m
		}
	}
	if fallback {
		for _, id := range p.fallback {
			if fp := b.providerByIDExact(id); fp != nil {
				if m := fp.matchModel(b, ref, false); m != nil {
					return m
				}
			}
		}
	}
	return nil
}

func (p *provider) findModel(b *PriceBook, ref string) *model {
	ref = strings.ToLower(ref)
	if m := p.matchModel(b, ref, true); m != nil {
		return m
	}
	if n := normalizeCompactDate(ref); n != ref {
		return p.matchModel(b, n, true)
	}
	return nil
}

func (b *PriceBook) normalizeProviderName(name string) string {
	norm := strings.ToLower(strings.TrimSpace(name))
	if alias, ok := b.aliases[norm]; ok {
		if alias == nil {
			return norm
		}
		return *alias
	}
	if p := b.findProviderByID(norm); p != nil {
		return p.id
	}
	return norm
}

// providerID is the normalized provider of a call (for override provider restrictions).
func (b *PriceBook) providerID(providerName, server string) string {
	if strings.TrimSpace(providerName) != "" {
		return b.normalizeProviderName(providerName)
	}
	if strings.TrimSpace(server) != "" {
		if p := b.providerForServer(server); p != nil {
			return p.id
		}
	}
	return ""
}

func isLocalServer(server string) bool {
	server = strings.TrimSpace(server)
	host := server
	if strings.Contains(server, "://") {
		rest := server[strings.Index(server, "://")+3:]
		if i := strings.IndexAny(rest, "/?#"); i >= 0 {
			rest = rest[:i]
		}
		if i := strings.LastIndex(rest, "@"); i >= 0 {
			rest = rest[i+1:]
		}
		if strings.HasPrefix(rest, "[") {
			if i := strings.Index(rest, "]"); i >= 0 {
				rest = rest[:i+1]
			}
		} else if i := strings.LastIndex(rest, ":"); i >= 0 {
			rest = rest[:i]
		}
		host = rest
	}
	if host == "" {
		return false
	}
	host = strings.ToLower(strings.Trim(host, "[]"))
	if host == "localhost" || strings.HasSuffix(host, ".localhost") || strings.HasSuffix(host, ".local") || strings.HasSuffix(host, ".internal") {
		return true
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return false
	}
	return ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsUnspecified()
}

func (b *PriceBook) resolve(providerName, server, modelName string) resolved {
	key := resolveKey{providerName, server, modelName}
	b.mu.Lock()
	r, ok := b.memo[key]
	b.mu.Unlock()
	if ok {
		return r
	}
	r = b.resolveUncached(providerName, server, modelName)
	b.mu.Lock()
	if len(b.memo) >= maxMemo {
		for k := range b.memo {
			delete(b.memo, k)
			break
		}
	}
	b.memo[key] = r
	b.mu.Unlock()
	return r
}

func pyRepr(s string) string {
	if strings.Contains(s, "'") && !strings.Contains(s, `"`) {
		return `"` + s + `"`
	}
	return "'" + strings.ReplaceAll(s, "'", `\'`) + "'"
}

func (b *PriceBook) resolveUncached(providerName, server, modelName string) resolved {
	name := strings.TrimSpace(modelName)
	if len(b.overrides) > 0 && name != "" {
		if ov := b.overrides[strings.ToLower(name)]; ov != nil {
			if ov.provider == "" || ov.provider == b.providerID(providerName, server) {
				prov := ov.provider
				if prov == "" {
					prov = b.providerID(providerName, server)
				}
				return resolved{prices: ov.prices, provider: prov, model: ov.model, source: "override"}
			}
		}
	}
	if name == "" {
		return resolved{reason: "the span has no model name"}
	}
	var candidates []*provider
	if strings.TrimSpace(providerName) != "" {
		norm := strings.ToLower(strings.TrimSpace(providerName))
		if alias, ok := b.aliases[norm]; ok {
			if alias == nil {
				return resolved{reason: fmt.Sprintf("genai-prices has no prices for provider %s; add a price override for model %s", pyRepr(providerName), pyRepr(name))}
			}
			norm = *alias
		}
		if p := b.findProviderByID(norm); p != nil {
			candidates = append(candidates, p)
		}
	}
	local := false
	if strings.TrimSpace(server) != "" {
		local = isLocalServer(server)
		if p := b.providerForServer(server); p != nil {
			dup := false
			for _, c := range candidates {
				dup = dup || c == p
			}
			if !dup {
				candidates = append(candidates, p)
			}
		}
	}
	found := func(p *provider, m *model) resolved {
		return resolved{prices: m.prices, provider: p.id, model: m.id, source: "genai-prices"}
	}
	for _, c := range candidates {
		if m := c.findModel(b, name); m != nil {
			return found(c, m)
		}
	}
	if !local {
		lower := strings.ToLower(name)
		for _, p := range b.providers {
			if p.modelMatch != nil && p.modelMatch.match(lower) {
				if m := p.findModel(b, lower); m != nil {
					return found(p, m)
				}
				break
			}
		}
		if prefix, rest, ok := strings.Cut(name, "/"); ok && prefix != "" && rest != "" {
			alias := strings.ToLower(prefix)
			skip := false
			if a, ok := b.aliases[alias]; ok {
				if a == nil {
					skip = true
				} else {
					alias = *a
				}
			}
			if !skip {
				if p := b.findProviderByID(alias); p != nil {
					if m := p.findModel(b, rest); m != nil {
						return found(p, m)
					}
				}
			}
		}
	}
	where := "no provider name"
	if providerName != "" {
		where = "provider " + pyRepr(providerName)
	}
	if server != "" {
		where += ", server " + pyRepr(server)
	}
	return resolved{reason: fmt.Sprintf("no price for model %s (%s) in genai-prices; add a price override", pyRepr(name), where)}
}

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

// Price prices a call made at `at`; ok=false gives the reason it is unpriced.
func (b *PriceBook) Price(providerName, server, modelName string, u Usage, at time.Time) (Cost, string, bool) {
	r := b.resolve(providerName, server, modelName)
	if r.prices == nil {
		return Cost{}, r.reason, false
	}
	c, ok := r.prices.at(at).price(u)
	if !ok {
		return Cost{}, "the cost of this usage is beyond what a span can carry (over 2^63 nano-USD)", false
	}
	c.Provider, c.Model, c.Source = r.provider, r.model, r.source
	return c, "", true
}

// ProviderIDs lists the providers in the file (for tests and diagnostics).
func (b *PriceBook) ProviderIDs() []string {
	ids := make([]string, 0, len(b.providers))
	for _, p := range b.providers {
		ids = append(ids, p.id)
	}
	sort.Strings(ids)
	return ids
}

// IsProviderAPI reports whether a peer (host name or URL) is an LLM provider's API.
func (b *PriceBook) IsProviderAPI(peer string) bool {
	return b != nil && peer != "" && b.providerForServer(peer) != nil
}
