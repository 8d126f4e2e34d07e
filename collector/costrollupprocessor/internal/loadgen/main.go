// Command loadgen drives the benchmark in benchmarks/bench_collector.sh: it sends OTLP/gRPC traces
// to a worker Collector as fast as the worker accepts them and runs the OTLP/gRPC sink the worker
// exports to, counting what arrives. It prints one JSON line.
package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/encoding/gzip" // the Collector's OTLP exporter compresses by default
)

type sink struct {
	ptraceotlp.UnimplementedGRPCServer
	spans       atomic.Int64
	first, last atomic.Int64 // unix nanos
}

func (s *sink) Export(_ context.Context, req ptraceotlp.ExportRequest) (ptraceotlp.ExportResponse, error) {
	n := int64(req.Traces().SpanCount())
	now := time.Now().UnixNano()
	s.first.CompareAndSwap(0, now)
	s.last.Store(now)
	s.spans.Add(n)
	return ptraceotlp.NewExportResponse(), nil
}

// mix: "usage" (LLM spans carry token usage only: the worker prices them), "priced" (priced
// in-process: cost.* already there, the worker only rolls up), "none" (no LLM spans).
var mix = flag.String("mix", "usage", "LLM spans: usage | priced | none")

func request(seq uint64, traces, spansPerTrace int) ptraceotlp.ExportRequest {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "loadgen")
	ss := rs.ScopeSpans().AppendEmpty()
	ss.Scope().SetName("loadgen")
	spans := ss.Spans()
	spans.EnsureCapacity(traces * spansPerTrace)
	now := pcommon.NewTimestampFromTime(time.Now())
	for t := 0; t < traces; t++ {
		var tid pcommon.TraceID
		binary.BigEndian.PutUint64(tid[:8], uint64(os.Getpid()))
		binary.BigEndian.PutUint64(tid[8:], seq*uint64(traces)+uint64(t))
		for i := 1; i <= spansPerTrace; i++ {
			s := spans.AppendEmpty()
			s.SetTraceID(tid)
			var sid pcommon.SpanID
			binary.BigEndian.PutUint64(sid[:], uint64(i))
			s.SetSpanID(sid)
			if i > 1 {
				var pid pcommon.SpanID
				binary.BigEndian.PutUint64(pid[:], uint64(1+(i-2)/3))
				s.SetParentSpanID(pid)
			}
			s.SetName(fmt.Sprintf("op %d", i))
			s.SetStartTimestamp(now)
			s.SetEndTimestamp(now + 1_000_000)
			a := s.Attributes()
			if i%5 == 4 && *mix != "none" { // 2 of 10 spans are LLM calls
				a.PutStr("gen_ai.operation.name", "chat")
				a.PutStr("gen_ai.provider.name", "openai")
				a.PutStr("gen_ai.request.model", "gpt-4o")
				a.PutInt("gen_ai.usage.input_tokens", int64(1000+i))
				a.PutInt("gen_ai.usage.output_tokens", 300)
				if *mix == "priced" {
					// As otel-costs' CostSpanProcessor + CostRollupExporter left the span in-process.
					nanos := int64(1000+i)*2500 + 300*10000
					for k, v := range map[string]any{"cost.currency": "USD", "cost.status": "priced", "cost.provider": "openai",
						"cost.model": "gpt-4o", "cost.price_source": "genai-prices", "cost.direct": float64(nanos) / 1e9,
						"gen_ai.usage.cost": float64(nanos) / 1e9, "cost.direct_nanos": nanos, "cost.input": float64(1000+i) * 2.5e-6,
						"cost.cache_read": 0.0, "cost.cache_write": 0.0, "cost.output": 0.003, "cost.children": 0.0,
						"cost.children_nanos": int64(0), "cost.total": float64(nanos) / 1e9, "cost.total_nanos": nanos,
						"cost.rollup.scope": "process"} {
						_ = a.PutEmpty(k).FromRaw(v)
					}
				}
			} else {
				a.PutStr("http.request.method", "GET")
				a.PutStr("url.path", "/api/items")
				a.PutInt("http.response.status_code", 200)
			}
		}
	}
	return ptraceotlp.NewExportRequestFromTraces(td)
}

func main() {
	target := flag.String("target", "127.0.0.1:4327", "worker OTLP/gRPC endpoint")
	sinkAddr := flag.String("sink", "127.0.0.1:4347", "address the sink listens on (the worker's EXPORT_OTLP_ENDPOINT)")
	duration := flag.Duration("duration", 20*time.Second, "how long to send")
	conns := flag.Int("conns", 4, "concurrent senders")
	traces := flag.Int("traces", 100, "traces per request")
	spansPerTrace := flag.Int("spans", 10, "spans per trace")
	drain := flag.Duration("drain", 15*time.Second, "how long to wait for the worker to flush after sending")
	flag.Parse()

	lis, err := net.Listen("tcp", *sinkAddr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(64 << 20))
	sk := &sink{}
	ptraceotlp.RegisterGRPCServer(srv, sk)
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()

	conn, err := grpc.NewClient(*target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	client := ptraceotlp.NewGRPCClient(conn)
	var seq atomic.Uint64
	var sent, failed atomic.Int64
	deadline := time.Now().Add(*duration)
	started := time.Now()
	var wg sync.WaitGroup
	for c := 0; c < *conns; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				req := request(seq.Add(1), *traces, *spansPerTrace)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := client.Export(ctx, req)
				cancel()
				if err != nil {
					failed.Add(1)
					time.Sleep(10 * time.Millisecond)
					continue
				}
				sent.Add(int64(*traces * *spansPerTrace))
			}
		}()
	}
	wg.Wait()
	sendSeconds := time.Since(started).Seconds()
	// Wait until everything sent arrived, or nothing more arrives for a while.
	waitUntil := time.Now().Add(*drain)
	for time.Now().Before(waitUntil) && sk.spans.Load() < sent.Load() {
		time.Sleep(100 * time.Millisecond)
	}
	sunk := sk.spans.Load()
	window := float64(sk.last.Load()-sk.first.Load()) / 1e9
	rate := 0.0
	if window > 0 {
		rate = float64(sunk) / window
	}
	out, _ := json.Marshal(map[string]any{
		"sent_spans":      sent.Load(),
		"failed_requests": failed.Load(),
		"send_seconds":    sendSeconds,
		"sunk_spans":      sunk,
		"sink_window_s":   window,
		"spans_per_s":     rate,
		"accepted_per_s":  float64(sent.Load()) / sendSeconds,
	})
	fmt.Println(string(out))
}
