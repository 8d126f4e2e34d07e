"""Smoke test sender: two services' spans of one trace, service B arriving 3 s after A's root.

Used by collector/smoke/run.sh. Service A (workflow -> chat, and a CLIENT span into B) exports
first; B's spans (its SERVER span under A's CLIENT span, and a chat) come 3 s later, past the
worker's root_wait (1 s in the smoke run): the worker must hold A's trace for B (await_children).
Prints one line per span: name, cost.total_nanos, cost.direct_nanos, scope, partial, remote_parent;
exits 1 unless the root's total is the exact sum of both services' calls and nothing is flagged.
"""
import json
import os
import sys
import time
import urllib.request

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor


def provider(name):
    p = TracerProvider(resource=Resource.create({"service.name": name}))
    p.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=os.environ["GATEWAY_OTLP_HTTP"] + "/v1/traces")))
    return p
a, b = provider("svc-a"), provider("svc-b")
ta, tb = a.get_tracer("a"), b.get_tracer("b")
with ta.start_as_current_span("workflow") as root:
    with ta.start_as_current_span("chat", attributes={"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 100}):
        pass
    with ta.start_as_current_span("POST /run", kind=trace.SpanKind.CLIENT, attributes={"server.address": "svc-b"}) as client:
        ctx = client.get_span_context()
    tid = format(root.get_span_context().trace_id, "032x")
a.force_flush()
time.sleep(3)  # service B's spans arrive 3 s later (> root_wait 1 s): the trace must wait for them
from opentelemetry.trace import NonRecordingSpan, SpanContext, set_span_in_context

parent = set_span_in_context(NonRecordingSpan(SpanContext(ctx.trace_id, ctx.span_id, True, ctx.trace_flags)))
with tb.start_as_current_span("POST /run", context=parent, kind=trace.SpanKind.SERVER):
    with tb.start_as_current_span("chat", attributes={"gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic", "gen_ai.request.model": "claude-sonnet-4-5", "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 100}):
        pass
b.force_flush()
for _ in range(40):
    time.sleep(0.5)
    try:
        data = json.load(urllib.request.urlopen(os.environ["JAEGER_QUERY"] + f"/api/traces/{tid}"))
    except Exception:
        continue
    spans = data["data"][0]["spans"]
    if len(spans) == 5:
        break
for s in spans:
    tags = {t["key"]: t["value"] for t in s["tags"] if t["key"].startswith("cost.")}
    print(s["operationName"], tags.get("cost.total_nanos"), tags.get("cost.direct_nanos"), tags.get("cost.rollup.scope"), tags.get("cost.rollup.partial"), tags.get("cost.rollup.remote_parent"))

by_name = {}
for s in spans:
    tags = {t["key"]: t["value"] for t in s["tags"] if t["key"].startswith("cost.")}
    by_name.setdefault(s["operationName"], []).append(tags)
root = by_name["workflow"][0]
direct = sum(t.get("cost.direct_nanos", 0) for tags in by_name.values() for t in tags)
ok = len(spans) == 5 and root.get("cost.total_nanos") == direct == 8_000_000 and root.get("cost.rollup.scope") == "trace" \
    and not any(t.get("cost.rollup.partial") for tags in by_name.values() for t in tags)
print("OK" if ok else "FAIL", f"root cost.total_nanos={root.get('cost.total_nanos')} sum of calls={direct}")
sys.exit(0 if ok else 1)
