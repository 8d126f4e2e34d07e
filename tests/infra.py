"""Real OpenTelemetry Collector and Jaeger v2 processes for end-to-end tests.

The binaries are built from their Go modules by ``collector/build.sh`` and cached in
``$OTEL_COSTS_BIN_DIR`` (default ``~/.cache/otel-costs/bin``). Every process started here listens
on 127.0.0.1 on free ports, writes its log to a file, is waited on until its health endpoint
answers, and is stopped (SIGTERM, then SIGKILL) when its ``with`` block ends.

The Collector configs read their listen ports from ``OTELCOL_*`` environment variables and Jaeger's
from ``JAEGER_*`` ones (see the headers of the files in ``collector/``); the context managers here
allocate those ports and hand them back on the yielded handle.

Example::

    ensure_binaries()
    with run_jaeger(log_dir=tmp_path) as jaeger, run_collector(
        GATEWAY_CONFIG, {"WORKER_ENDPOINTS": jaeger.otlp_grpc_endpoint}, log_dir=tmp_path
    ) as gateway:
        ...  # export spans to gateway.otlp_grpc_endpoint
        traces = wait_for_traces(jaeger.query_port, "my-service", min_traces=1)
"""

from __future__ import annotations

import functools
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
COLLECTOR_DIR = REPO_ROOT / "collector"
BUILD_SCRIPT = COLLECTOR_DIR / "build.sh"
#: apps -> gateway: OTLP in, ``load_balancing`` exporter routing by trace ID to ``WORKER_ENDPOINTS``.
GATEWAY_CONFIG = COLLECTOR_DIR / "gateway.yaml"
#: gateway -> worker: ``memory_limiter``, ``costrollup``, ``batch``, OTLP/gRPC to ``EXPORT_OTLP_ENDPOINT``.
WORKER_CONFIG = COLLECTOR_DIR / "worker.yaml"
#: workers -> Collector -> Jaeger (``JAEGER_OTLP_ENDPOINT``).
BACKEND_JAEGER_CONFIG = COLLECTOR_DIR / "backend-jaeger.yaml"
#: workers -> Collector -> Tempo (``TEMPO_OTLP_ENDPOINT``).
BACKEND_TEMPO_CONFIG = COLLECTOR_DIR / "backend-tempo.yaml"
#: Jaeger v2: OTLP in, memory storage, query API.
JAEGER_CONFIG = COLLECTOR_DIR / "jaeger.yaml"

T = TypeVar("T")

LOOPBACK = "127.0.0.1"
#: Seconds a process gets to answer its health check; generous because CI machines are slow.
STARTUP_TIMEOUT = 60.0
#: Seconds a process gets to exit after SIGTERM before it is killed.
SHUTDOWN_TIMEOUT = 10.0
#: Seconds ``collector/build.sh`` may take on a cold Go build cache (2 cores: several minutes).
BUILD_TIMEOUT = 3600.0


class ServiceStartError(RuntimeError):
    """A Collector or Jaeger process exited or did not become healthy in time."""


class BuildError(RuntimeError):
    """``collector/build.sh`` failed; the message holds the end of its output."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now.

    The OS picks it; another process could take it before the caller binds it, which on a test
    machine is rare enough that the startup check (the process exits) reports it clearly.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def find_go() -> str | None:
    """Return the path of the ``go`` command (``$GO``, ``PATH``, ``/usr/local/go/bin/go``) or None."""
    candidates = [os.environ.get("GO"), shutil.which("go"), "/usr/local/go/bin/go"]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@functools.cache
def ensure_binaries() -> tuple[Path, Path]:
    """Build (or reuse) the Collector and Jaeger binaries; return ``(collector_path, jaeger_path)``.

    Runs ``collector/build.sh``, which returns within a second when the cached binaries match the
    manifest and versions, and takes minutes on a cold Go build cache. Skips the calling test only
    when Go is not installed; any build failure is an error (CI has Go, so the build must work).
    """
    go = find_go()
    if go is None:
        pytest.skip("Go is not installed: the Collector and Jaeger are built from Go modules (Go >= 1.26)")
    log_path = Path(tempfile.gettempdir()) / "otel-costs-build.log"
    with log_path.open("wb") as log:
        result = subprocess.run(
            ["bash", str(BUILD_SCRIPT)],
            env={**os.environ, "GO": go},
            stdout=subprocess.PIPE,
            stderr=log,
            timeout=BUILD_TIMEOUT,
            check=False,
        )
    if result.returncode != 0:
        raise BuildError(
            f"collector/build.sh exited with {result.returncode}; full log in {log_path}:\n{_tail(log_path)}"
        )
    # build.sh prints the two paths last on stdout; everything else goes to stderr.
    collector, jaeger = result.stdout.decode().split()[-2:]
    return Path(collector), Path(jaeger)


@dataclass(frozen=True)
class CollectorProcess:
    """A running Collector started by :func:`run_collector`."""

    process: subprocess.Popen[bytes]
    """The OS process."""
    log_path: Path
    """File holding the process's stdout and stderr."""
    otlp_grpc_port: int
    """OTLP/gRPC receiver port (``OTELCOL_OTLP_GRPC_PORT``)."""
    otlp_http_port: int
    """OTLP/HTTP receiver port (``OTELCOL_OTLP_HTTP_PORT``)."""
    health_port: int
    """health_check extension port (``OTELCOL_HEALTH_PORT``)."""
    metrics_port: int
    """The Collector's own Prometheus metrics port (``OTELCOL_METRICS_PORT``)."""

    @property
    def otlp_grpc_endpoint(self) -> str:
        """``host:port`` for OTLP/gRPC exporters, e.g. ``127.0.0.1:40123``."""
        return f"{LOOPBACK}:{self.otlp_grpc_port}"

    @property
    def otlp_http_traces_url(self) -> str:
        """Full OTLP/HTTP traces URL, e.g. ``http://127.0.0.1:40124/v1/traces``."""
        return f"http://{LOOPBACK}:{self.otlp_http_port}/v1/traces"

    def metric(self, name: str) -> float:
        """Sum of all samples of the Prometheus metric ``name`` the Collector exposes (0 if absent)."""
        return prometheus_metric(self.metrics_port, name)


@dataclass(frozen=True)
class JaegerProcess:
    """A running Jaeger v2 started by :func:`run_jaeger`."""

    process: subprocess.Popen[bytes]
    """The OS process."""
    log_path: Path
    """File holding the process's stdout and stderr."""
    otlp_grpc_port: int
    """OTLP/gRPC receiver port."""
    otlp_http_port: int
    """OTLP/HTTP receiver port."""
    query_port: int
    """HTTP query API and UI port (``/api/traces``, ``/api/services``)."""
    query_grpc_port: int
    """gRPC query API port."""
    health_port: int
    """healthcheckv2 port (``/status``)."""
    metrics_port: int
    """Jaeger's own Prometheus metrics port."""

    @property
    def otlp_grpc_endpoint(self) -> str:
        """``host:port`` for OTLP/gRPC exporters, e.g. ``127.0.0.1:40125``."""
        return f"{LOOPBACK}:{self.otlp_grpc_port}"

    @property
    def otlp_http_traces_url(self) -> str:
        """Full OTLP/HTTP traces URL, e.g. ``http://127.0.0.1:40126/v1/traces``."""
        return f"http://{LOOPBACK}:{self.otlp_http_port}/v1/traces"

    @property
    def query_url(self) -> str:
        """Base URL of the query API and UI, e.g. ``http://127.0.0.1:40127``."""
        return f"http://{LOOPBACK}:{self.query_port}"


@contextmanager
def run_collector(
    config: Path | Sequence[Path],
    env: Mapping[str, str] | None = None,
    *,
    log_dir: Path | None = None,
    name: str = "otelcol",
    startup_timeout: float = STARTUP_TIMEOUT,
) -> Iterator[CollectorProcess]:
    """Run the built Collector with ``config`` until the ``with`` block ends.

    ``config`` is one file or several, merged in order by the Collector (later files override
    keys of earlier ones, lists are replaced): a test can layer a small overlay on a shipped config.
    ``env`` adds environment variables (e.g. ``WORKER_ENDPOINTS``); the ``OTELCOL_*`` listen ports
    are allocated here unless ``env`` sets them. Logs go to ``<log_dir>/<name>-<grpc port>.log``.
    Raises :class:`ServiceStartError` if the process exits or its health check does not answer 200
    within ``startup_timeout`` seconds.

    Example::

        with run_collector(GATEWAY_CONFIG, {"WORKER_ENDPOINTS": "127.0.0.1:4317"}) as gateway:
            exporter = OTLPSpanExporter(endpoint=gateway.otlp_grpc_endpoint, insecure=True)
    """
    collector_bin, _ = ensure_binaries()
    configs = [config] if isinstance(config, Path) else list(config)
    env = dict(env or {})
    ports = {
        key: int(env[key]) if key in env else free_port()
        for key in (
            "OTELCOL_OTLP_GRPC_PORT",
            "OTELCOL_OTLP_HTTP_PORT",
            "OTELCOL_HEALTH_PORT",
            "OTELCOL_METRICS_PORT",
        )
    }
    env.update({key: str(port) for key, port in ports.items()})
    env.setdefault("OTELCOL_LISTEN_HOST", LOOPBACK)
    argv = [str(collector_bin)]
    for path in configs:
        argv += ["--config", str(path)]
    log_path = _log_path(log_dir, f"{name}-{ports['OTELCOL_OTLP_GRPC_PORT']}")
    health_url = f"http://{LOOPBACK}:{ports['OTELCOL_HEALTH_PORT']}/"
    with _run_process(argv, env, health_url, log_path, name, startup_timeout) as process:
        yield CollectorProcess(
            process=process,
            log_path=log_path,
            otlp_grpc_port=ports["OTELCOL_OTLP_GRPC_PORT"],
            otlp_http_port=ports["OTELCOL_OTLP_HTTP_PORT"],
            health_port=ports["OTELCOL_HEALTH_PORT"],
            metrics_port=ports["OTELCOL_METRICS_PORT"],
        )


@contextmanager
def run_jaeger(
    *,
    log_dir: Path | None = None,
    config: Path = JAEGER_CONFIG,
    env: Mapping[str, str] | None = None,
    startup_timeout: float = STARTUP_TIMEOUT,
) -> Iterator[JaegerProcess]:
    """Run the built Jaeger v2 (memory storage) until the ``with`` block ends.

    All listen ports (OTLP gRPC/HTTP, query HTTP/gRPC, health, metrics) are allocated here and
    returned on the handle; ``env`` may add or override ``JAEGER_*`` variables. Raises
    :class:`ServiceStartError` if Jaeger exits or ``/status`` does not answer 200 in time.

    Example::

        with run_jaeger(log_dir=tmp_path) as jaeger:
            services = httpx.get(f"{jaeger.query_url}/api/services").json()["data"]
    """
    _, jaeger_bin = ensure_binaries()
    names = {
        "otlp_grpc_port": "JAEGER_OTLP_GRPC_PORT",
        "otlp_http_port": "JAEGER_OTLP_HTTP_PORT",
        "query_port": "JAEGER_QUERY_HTTP_PORT",
        "query_grpc_port": "JAEGER_QUERY_GRPC_PORT",
        "health_port": "JAEGER_HEALTH_PORT",
        "metrics_port": "JAEGER_METRICS_PORT",
    }
    env = dict(env or {})
    ports = {field: int(env[var]) if var in env else free_port() for field, var in names.items()}
    env.update({var: str(ports[field]) for field, var in names.items()})
    env.setdefault("JAEGER_LISTEN_HOST", LOOPBACK)
    log_path = _log_path(log_dir, f"jaeger-{ports['otlp_grpc_port']}")
    health_url = f"http://{LOOPBACK}:{ports['health_port']}/status"
    argv = [str(jaeger_bin), "--config", str(config)]
    with _run_process(argv, env, health_url, log_path, "jaeger", startup_timeout) as process:
        yield JaegerProcess(process=process, log_path=log_path, **ports)


def jaeger_services(query_port: int) -> list[str]:
    """Service names Jaeger has stored spans for (``GET /api/services``)."""
    response = httpx.get(f"http://{LOOPBACK}:{query_port}/api/services", timeout=10.0)
    response.raise_for_status()
    return list(response.json()["data"] or [])


def jaeger_traces(query_port: int, service: str, *, limit: int = 1000) -> list[dict[str, Any]]:
    """Traces with at least one span of ``service`` (``GET /api/traces?service=...``), newest first.

    Each trace is Jaeger's JSON: ``{"traceID", "spans": [...], "processes": {...}}``; read span
    and process tags with :func:`tags`. A service Jaeger has not seen yet gives an empty list.
    """
    if service not in jaeger_services(query_port):
        return []
    response = httpx.get(
        f"http://{LOOPBACK}:{query_port}/api/traces",
        params={"service": service, "limit": str(limit)},
        timeout=10.0,
    )
    response.raise_for_status()
    return list(response.json()["data"] or [])


def jaeger_trace(query_port: int, trace_id: str) -> dict[str, Any] | None:
    """One trace by its 32-hex-digit ID (``GET /api/traces/{id}``), or None if Jaeger has none."""
    response = httpx.get(f"http://{LOOPBACK}:{query_port}/api/traces/{trace_id}", timeout=10.0)
    if response.status_code == httpx.codes.NOT_FOUND:
        return None
    response.raise_for_status()
    data = response.json()["data"]
    return dict(data[0]) if data else None


def wait_for_traces(
    query_port: int, service: str, *, min_traces: int, min_spans: int = 0, timeout: float = 30.0
) -> list[dict[str, Any]]:
    """Poll Jaeger until ``service`` has ``min_traces`` traces holding ``min_spans`` spans in all.

    Spans reach storage asynchronously (batching at every hop), so tests wait on this instead of
    sleeping. Raises TimeoutError, saying what was seen, after ``timeout`` seconds.
    """

    def enough() -> list[dict[str, Any]] | None:
        traces = jaeger_traces(query_port, service)
        spans = sum(len(trace["spans"]) for trace in traces)
        return traces if len(traces) >= min_traces and spans >= min_spans else None

    return poll_until(
        enough, timeout=timeout, what=f"{min_traces} traces / {min_spans} spans of {service!r} in Jaeger"
    )


def tags(item: dict[str, Any]) -> dict[str, Any]:
    """A Jaeger span's or process's tags as ``{key: value}``: ints, floats, bools and strs as sent.

    Jaeger's JSON writes an ``int64`` outside JavaScript's exact range (beyond 2**53) as a string;
    this turns it back into the int, so exact nano-USD figures compare exactly.
    """
    return {tag["key"]: _tag_value(tag) for tag in item.get("tags", [])}


def _tag_value(tag: dict[str, Any]) -> Any:
    value = tag["value"]
    if tag.get("type") == "int64" and isinstance(value, str):
        return int(value)
    return value


def prometheus_metric(port: int, name: str) -> float:
    """Sum of all samples of metric ``name`` at ``http://127.0.0.1:<port>/metrics`` (0 if absent)."""
    response = httpx.get(f"http://{LOOPBACK}:{port}/metrics", timeout=10.0)
    response.raise_for_status()
    total = 0.0
    for line in response.text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        series, _, value = line.rpartition(" ")
        if series.split("{", 1)[0] == name:
            total += float(value)
    return total


def poll_until(check: Callable[[], T | None], *, timeout: float, what: str, interval: float = 0.1) -> T:
    """Call ``check`` until it returns something other than None; return that.

    Raises TimeoutError naming ``what`` after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# --- internals ------------------------------------------------------------------------------


def _log_path(log_dir: Path | None, stem: str) -> Path:
    directory = log_dir if log_dir is not None else Path(tempfile.mkdtemp(prefix="otel-costs-logs-"))
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"{stem}.log"


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(log unreadable: {exc})"


@contextmanager
def _run_process(
    argv: list[str],
    env: Mapping[str, str],
    health_url: str,
    log_path: Path,
    name: str,
    startup_timeout: float,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``argv``, wait until ``health_url`` answers 200, yield, then stop the process."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Its own session: a Ctrl-C in the terminal reaches pytest, which then stops it in order.
            start_new_session=True,
        )
        try:
            _wait_healthy(process, health_url, log_path, name, startup_timeout)
            yield process
        finally:
            _stop(process)


def _wait_healthy(
    process: subprocess.Popen[bytes], url: str, log_path: Path, name: str, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=1.0) as client:
        while True:
            try:
                if client.get(url).status_code == httpx.codes.OK:
                    return
            except httpx.TransportError:
                pass  # not listening yet
            try:
                # Doubles as the poll interval and returns at once if the process dies.
                code = process.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                code = None
            if code is not None:
                raise ServiceStartError(
                    f"{name} exited with {code} during startup; log {log_path}:\n{_tail(log_path)}"
                )
            if time.monotonic() >= deadline:
                raise ServiceStartError(
                    f"{name} not healthy at {url} after {timeout:.0f}s; log {log_path}:\n{_tail(log_path)}"
                )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=SHUTDOWN_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
