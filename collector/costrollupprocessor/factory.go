package costrollupprocessor // import "github.com/otel-costs/otel-costs/collector/costrollupprocessor"

import (
	"context"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/processor"
)

const (
	typeStr   = "costrollup"
	stability = component.StabilityLevelAlpha
)

// Defaults. The Python SDK's defaults (configure(): BatchSpanProcessor 5 s schedule delay plus the
// in-process CostRollupExporter's 5 s linger) put a service's spans on the wire up to ~10 s after
// its local root ended; the gateway adds its own batching. A root's trace is held while any of its
// CLIENT spans into another service has no child (await_children), so root_wait only has to cover
// one service's spans arriving in more than one request; max_wait (from the first span) bounds it
// all and is 6x the SDK's worst case.
const (
	defaultRootWait         = 5 * time.Second
	defaultMaxWait          = 60 * time.Second
	defaultMaxBufferedSpans = 1_000_000
	defaultRememberReleased = 100_000
	defaultCheckInterval    = 100 * time.Millisecond
)

// componentType is the type name in Collector configs: "costrollup".
var componentType = component.MustNewType(typeStr)

// NewFactory returns the costrollup processor's factory.
func NewFactory() processor.Factory {
	return processor.NewFactory(
		componentType,
		createDefaultConfig,
		processor.WithTraces(createTraces, stability),
	)
}

func createDefaultConfig() component.Config {
	return &Config{
		RootWait:         defaultRootWait,
		MaxWait:          defaultMaxWait,
		AwaitChildren:    true,
		MaxBufferedSpans: defaultMaxBufferedSpans,
		RememberReleased: defaultRememberReleased,
		CheckInterval:    defaultCheckInterval,
	}
}

func createTraces(
	_ context.Context,
	set processor.Settings,
	cfg component.Config,
	next consumer.Traces,
) (processor.Traces, error) {
	return newProcessor(set, cfg.(*Config), next)
}
