package costrollupprocessor // import "github.com/otel-costs/otel-costs/collector/costrollupprocessor"

import (
	"errors"
	"fmt"
	"regexp"
	"time"
)

// Config of the costrollup processor. See README.md for what each key does.
type Config struct {
	// PricesFile is the path of a price file (README.md, "Price file"). Empty: spans that carry
	// token usage but no cost.status are flagged unpriced (never priced at $0).
	PricesFile string `mapstructure:"prices_file"`
	// RootWait is how long a trace is held after its root span (no parent) arrived, and after
	// each arrival that gave a waiting CLIENT span its child.
	RootWait time.Duration `mapstructure:"root_wait"`
	// MaxWait is how long a trace is held at most after its first span arrived.
	MaxWait time.Duration `mapstructure:"max_wait"`
	// AwaitChildren keeps a trace while a CLIENT span into another service has no child yet
	// (up to MaxWait); a root released without it is flagged partial (missing_child).
	AwaitChildren bool `mapstructure:"await_children"`
	// AwaitPeers, when set, limits AwaitChildren to CLIENT spans whose peer (server.address,
	// else the host of url.full / http.url, else net.peer.name) matches one of these regexes.
	AwaitPeers []string `mapstructure:"await_peers"`
	// IgnorePeers: CLIENT spans whose peer matches one of these regexes are never awaited.
	IgnorePeers []string `mapstructure:"ignore_peers"`
	// MaxBufferedSpans bounds the spans held; past it the oldest traces are released early,
	// their spans flagged cost.rollup.partial (buffer_full).
	MaxBufferedSpans int `mapstructure:"max_buffered_spans"`
	// RememberReleased is how many released trace ids are remembered to flag late spans.
	RememberReleased int `mapstructure:"remember_released"`
	// CheckInterval is how often due traces are looked for.
	CheckInterval time.Duration `mapstructure:"check_interval"`
}

func (c *Config) Validate() error {
	var errs []error
	if c.RootWait < 0 {
		errs = append(errs, errors.New("root_wait must be >= 0"))
	}
	if c.MaxWait <= 0 {
		errs = append(errs, errors.New("max_wait must be > 0"))
	}
	if c.MaxWait < c.RootWait {
		errs = append(errs, errors.New("max_wait must be >= root_wait"))
	}
	if c.MaxBufferedSpans <= 0 {
		errs = append(errs, errors.New("max_buffered_spans must be > 0"))
	}
	if c.RememberReleased < 0 {
		errs = append(errs, errors.New("remember_released must be >= 0"))
	}
	if c.CheckInterval <= 0 {
		errs = append(errs, errors.New("check_interval must be > 0"))
	}
	for _, list := range [][]string{c.AwaitPeers, c.IgnorePeers} {
		for _, p := range list {
			if _, err := regexp.Compile(p); err != nil {
				errs = append(errs, fmt.Errorf("peer pattern %q: %w", p, err))
			}
		}
	}
	if c.PricesFile != "" {
		if _, err := LoadPriceFile(c.PricesFile); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
