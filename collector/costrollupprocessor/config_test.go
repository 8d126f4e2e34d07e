package costrollupprocessor

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/processor/processortest"
)

func TestLoadConfig(t *testing.T) {
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		id      string
		want    *Config
		wantErr string
	}{
		{id: "costrollup", want: createDefaultConfig().(*Config)},
		{id: "costrollup/custom", want: &Config{
			PricesFile: "testdata/prices.json", RootWait: 2 * time.Second, MaxWait: 30 * time.Second,
			AwaitChildren: false, AwaitPeers: []string{"^agent-"}, IgnorePeers: []string{`\.internal$`},
			MaxBufferedSpans: 1000, RememberReleased: 10, CheckInterval: 50 * time.Millisecond,
		}},
		{id: "costrollup/bad_wait", wantErr: "max_wait must be >= root_wait"},
		{id: "costrollup/bad_prices", wantErr: "prices_file"},
		{id: "costrollup/bad_regex", wantErr: "peer pattern"},
	} {
		t.Run(tc.id, func(t *testing.T) {
			id := component.NewID(componentType)
			if _, name, ok := cut(tc.id, "/"); ok {
				id = component.NewIDWithName(componentType, name)
			}
			sub, err := cm.Sub(id.String())
			if err != nil {
				t.Fatal(err)
			}
			cfg := createDefaultConfig()
			if err := sub.Unmarshal(cfg); err != nil {
				t.Fatal(err)
			}
			err = confmap.Validate(cfg)
			if tc.wantErr != "" {
				if err == nil || !contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := cfg.(*Config)
			if got.PricesFile != tc.want.PricesFile || got.RootWait != tc.want.RootWait || got.MaxWait != tc.want.MaxWait ||
				got.AwaitChildren != tc.want.AwaitChildren || len(got.AwaitPeers) != len(tc.want.AwaitPeers) ||
				len(got.IgnorePeers) != len(tc.want.IgnorePeers) || got.MaxBufferedSpans != tc.want.MaxBufferedSpans ||
				got.RememberReleased != tc.want.RememberReleased || got.CheckInterval != tc.want.CheckInterval {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func cut(s, sep string) (string, string, bool) {
	for i := 0; i+len(sep) <= len(s); i++ {
		if s[i:i+len(sep)] == sep {
			return s[:i], s[i+len(sep):], true
		}
	}
	return s, "", false
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

func TestFactoryLifecycle(t *testing.T) {
	f := NewFactory()
	if f.Type().String() != "costrollup" {
		t.Fatal(f.Type())
	}
	cfg := f.CreateDefaultConfig().(*Config)
	cfg.PricesFile = filepath.Join("testdata", "prices.json")
	p, err := f.CreateTraces(context.Background(), processortest.NewNopSettings(f.Type()), cfg, consumertest.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if !p.Capabilities().MutatesData {
		t.Fatal("the processor writes attributes: MutatesData")
	}
	if err := p.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	if err := p.ConsumeTraces(context.Background(), build("a", sp{trace: 1, id: 1})); err != nil {
		t.Fatal(err)
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}
