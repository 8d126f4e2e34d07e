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
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/encoding/gzip" // the Collector's OTLP exporter compresses by default
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/otel-costs/otel-costs/collector/costrollupprocessor/internal/benchdata"
)

// sink is the OTLP/gRPC server the worker exports to. It does not decode what it gets (that would
// cost the load generator's core more than the worker's work): it counts the spans by walking the
// protobuf framing (ExportTraceServiceRequest.resource_spans(1).scope_spans(2).spans(2)).
type sink struct {
	spans       atomic.Int64
	first, last atomic.Int64 // unix nanos
}

type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = data
	return nil
}
func (rawCodec) Name() string { return "proto" }

// countSpans counts field `path[len-1]` messages nested under fields path[:len-1].
func countSpans(b []byte, path []protowire.Number) int64 {
	var n int64
	for len(b) > 0 {
		num, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return n
		}
		b = b[l:]
		if typ != protowire.BytesType {
			l = protowire.ConsumeFieldValue(num, typ, b)
			if l < 0 {
				return n
			}
			b = b[l:]
			continue
		}
		v, l := protowire.ConsumeBytes(b)
		if l < 0 {
			return n
		}
		b = b[l:]
		if num == path[0] {
			if len(path) == 1 {
				n++
			} else {
				n += countSpans(v, path[1:])
			}
		}
	}
	return n
}

func (s *sink) export(_ any, stream grpc.ServerStream) error {
	var msg []byte
	if err := stream.RecvMsg(&msg); err != nil {
		return err
	}
	n := countSpans(msg, []protowire.Number{1, 2, 2})
	now := time.Now().UnixNano()
	s.first.CompareAndSwap(0, now)
	s.last.Store(now)
	s.spans.Add(n)
	empty := []byte{}
	return stream.SendMsg(&empty)
}

// mix: "usage" (LLM spans carry token usage only: the worker prices them), "priced" (priced
// in-process: cost.* already there, the worker only rolls up), "none" (no LLM spans).
var mix = flag.String("mix", "usage", "LLM spans: usage | priced | none")

func request(seq uint64, traces, spansPerTrace int) ptraceotlp.ExportRequest {
	td := benchdata.Traces(uint64(os.Getpid()), seq*uint64(traces), traces, spansPerTrace, *mix,
		pcommon.NewTimestampFromTime(time.Now()))
	return ptraceotlp.NewExportRequestFromTraces(td)
}

// renumber gives the request's traces new trace ids (cheaper than building a new request).
func renumber(req ptraceotlp.ExportRequest, seq uint64, spansPerTrace int) {
	spans := req.Traces().ResourceSpans().At(0).ScopeSpans().At(0).Spans()
	var tid pcommon.TraceID
	binary.BigEndian.PutUint64(tid[:8], uint64(os.Getpid()))
	for i := 0; i < spans.Len(); i++ {
		binary.BigEndian.PutUint64(tid[8:], seq<<20|uint64(i/spansPerTrace))
		spans.At(i).SetTraceID(tid)
	}
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
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(64<<20), grpc.ForceServerCodec(rawCodec{}))
	sk := &sink{}
	srv.RegisterService(&grpc.ServiceDesc{
		ServiceName: "opentelemetry.proto.collector.trace.v1.TraceService",
		HandlerType: (*any)(nil),
		Streams:     []grpc.StreamDesc{{StreamName: "Export", Handler: sk.export, ServerStreams: false, ClientStreams: false}},
	}, sk)
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
			req := request(seq.Add(1), *traces, *spansPerTrace)
			for time.Now().Before(deadline) {
				renumber(req, seq.Add(1), *spansPerTrace)
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
