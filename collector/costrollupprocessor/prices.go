// PriceBook: the providers, models and overrides of a price file (parsed in pricefile.go), resolved
// per (provider, server, model) as Python's PriceBook matches them, with a bounded memo; Price
// prices one call with the resolved set (pricing.go).

package costrollupprocessor // import "github.com/otel-costs/otel-costs/collector/costrollupprocessor"

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/dlclark/regexp2"
)

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
