"""The plain-process commands of ``docs/deployment.md``, run as written on loopback.

The doc marks the blocks it promises work with an HTML comment on the line before the fence:
``<!-- tested: processes -->`` (Jaeger, two workers, the gateway, all on their documented ports),
``<!-- tested: app.py -->`` (an app on ``otel_costs.configure()`` defaults) and
``<!-- tested: run-app -->`` (the command that runs it, with the documented
``OTEL_EXPORTER_OTLP_ENDPOINT``). This test extracts those blocks, runs them with bash from the
repository root (the app from a scratch directory), and checks the app's trace in Jaeger's API:
the root's ``cost.total_nanos`` is the sum of its calls, trace scope, unflagged. Only
``OTEL_COSTS_BIN_DIR`` (where ``collector/build.sh`` put the binaries, which the block reads) and
``PATH`` (this venv's ``python`` first) come from the test.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from infra import LOOPBACK, REPO_ROOT, ensure_binaries, poll_until, tags

from otel_costs import conventions as conv

DOC = REPO_ROOT / "docs" / "deployment.md"
#: The documented ports: every listener of the processes block, and Jaeger's query API.
DOCUMENTED_PORTS = (4317, 4318, 13133, 8888, 4327, 4328, 13143, 8898, 4337, 4338, 13153, 8908)
JAEGER_PORTS = (4347, 4348, 16686, 16685, 13163, 8918)
HEALTH = ("http://127.0.0.1:13133/", "http://127.0.0.1:13143/", "http://127.0.0.1:13153/")
JAEGER_STATUS = "http://127.0.0.1:13163/status"
JAEGER_QUERY = "http://127.0.0.1:16686"


def doc_blocks(text: str) -> dict[str, str]:
    """The fenced blocks preceded by ``<!-- tested: NAME -->``, by NAME."""
    pattern = re.compile(r"^<!-- tested: (\S+) -->\n```[a-z]*\n(.*?)^```$", re.MULTILINE | re.DOTALL)
    return {name: body for name, body in pattern.findall(text)}


def test_doc_marks_the_blocks_and_the_documented_rules() -> None:
    """The tested blocks exist, the one-host example stays on loopback, the endpoint fits http/protobuf."""
    text = DOC.read_text()
    blocks = doc_blocks(text)
    assert set(blocks) == {"processes", "app.py", "run-app"}
    assert "0.0.0.0" not in blocks["processes"]
    assert "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318" in blocks["run-app"]
    assert "OTEL_EXPORTER_OTLP_ENDPOINT=http://<gateway>:4318" in text
    assert "serves the query API" in text and "not the web UI" in text and "official Jaeger release" in text
    assert "otel-costs serve" not in text
    # collector/README.md shows the very same one-host commands.
    readme = (REPO_ROOT / "collector" / "README.md").read_text()
    assert f"```sh\n{blocks['processes']}```" in readme


def _in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex((LOOPBACK, port)) == 0


def _healthy(url: str, shell: subprocess.Popen[bytes], log: Path) -> bool | None:
    if shell.poll() is not None:
        raise RuntimeError(
            f"the documented processes exited ({shell.returncode}):\n{log.read_text()[-3000:]}"
        )
    try:
        return httpx.get(url, timeout=1).status_code == 200 or None
    except httpx.TransportError:
        return None


def _stop_group(shell: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group this test started (bash and the processes it put in the background)."""
    try:
        os.killpg(shell.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        shell.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(shell.pid, signal.SIGKILL)
        shell.wait()


def _stored_root(trace_id: str, spans: int) -> dict[str, Any] | None:
    response = httpx.get(f"{JAEGER_QUERY}/api/traces/{trace_id}", timeout=5)
    if response.status_code != 200 or not response.json()["data"]:
        return None
    data = response.json()["data"][0]
    roots = [s for s in data["spans"] if not s.get("references")]
    if len(data["spans"]) < spans or len(roots) != 1 or conv.COST_ROLLUP_SCOPE not in tags(roots[0]):
        return None
    return dict(data)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_documented_plain_process_commands_deliver_a_priced_trace(tmp_path: Path) -> None:
    """Run the doc's processes block and app as written; the app's trace is in Jaeger, rolled up."""
    collector_bin, _ = ensure_binaries()
    busy = [p for p in DOCUMENTED_PORTS + JAEGER_PORTS if _in_use(p)]
    assert not busy, f"the documented ports {busy} are taken on this machine: stop what listens there"
    blocks = doc_blocks(DOC.read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL", "JAEGER_"))}
    env["OTEL_COSTS_BIN_DIR"] = str(collector_bin.parent)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    log = tmp_path / "processes.log"
    with log.open("wb") as out:
        # The block as written, then `wait`: bash stays the leader of the group the test stops.
        shell = subprocess.Popen(
            ["bash", "-euc", blocks["processes"] + "\nwait\n"],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        for url in (*HEALTH, JAEGER_STATUS):
            poll_until(lambda url=url: _healthy(url, shell, log), timeout=60, what=url)
        (tmp_path / "app.py").write_text(blocks["app.py"])
        app = subprocess.run(
            ["bash", "-euc", blocks["run-app"]],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert app.returncode == 0, app.stderr
        match = re.search(r"^trace ([0-9a-f]{32})$", app.stdout, re.MULTILINE)
        assert match, app.stdout
        # workflow span, the LLM call and its HTTP span; the workers hold the trace root_wait (5 s).
        stored = poll_until(
            lambda: _stored_root(match.group(1), 3),
            timeout=60,
            what="the app's trace in Jaeger",
            interval=0.5,
        )
    finally:
        _stop_group(shell)
    span_tags = [tags(s) for s in stored["spans"]]
    root = tags(next(s for s in stored["spans"] if not s.get("references")))
    calls = [t for t in span_tags if conv.COST_DIRECT_NANOS in t]
    assert len(calls) == 1 and calls[0][conv.COST_STATUS] == conv.STATUS_PRICED
    assert root[conv.COST_TOTAL_NANOS] == calls[0][conv.COST_DIRECT_NANOS] > 0
    assert root[conv.COST_ROLLUP_SCOPE] == conv.SCOPE_TRACE
    assert not any(t.get(conv.COST_ROLLUP_PARTIAL) for t in span_tags)
    assert {p["serviceName"] for p in stored["processes"].values()} == {"hello"}
