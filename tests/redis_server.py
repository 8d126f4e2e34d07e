"""A real ``redis-server`` on loopback for the budget-ledger tests (a pytest plugin module).

Each server listens on 127.0.0.1 on a free port, keeps its files in a temp dir, persists
nothing (``--save '' --appendonly no``), is waited on with ``PING`` until it answers, and is
stopped at teardown. Install it with ``apt-get install redis-server``.

Fixtures: ``redis_server`` (one per test session, shared: tests use distinct key prefixes) and
``redis_server_factory`` (servers of a test's own, e.g. to stop one mid-test).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from infra import LOOPBACK, free_port

#: Seconds a server gets to answer PING; generous because CI machines are slow.
STARTUP_TIMEOUT = 30.0


class RedisServer:
    """One redis-server process; ``stop()`` and ``start()`` again keep the same port (outage tests)."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port if port is not None else free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://{LOOPBACK}:{self.port}/0"

    def client(self) -> redis.Redis:
        """A client of this server (close it after use)."""
        return redis.Redis(host=LOOPBACK, port=self.port, socket_timeout=5.0)

    def start(self) -> RedisServer:
        """Start the process and wait until it answers PING."""
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed: apt-get update && apt-get install -y redis-server")
        self.directory.mkdir(parents=True, exist_ok=True)
        log_path = self.directory / "redis.log"
        argv = [
            binary,
            "--port", str(self.port),
            "--bind", LOOPBACK,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            "--logfile", str(log_path),
        ]  # fmt: skip
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)
        self._wait_for_ping(log_path)
        return self

    def _wait_for_ping(self, log_path: Path) -> None:
        assert self.process is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT
        with redis.Redis(host=LOOPBACK, port=self.port, socket_connect_timeout=0.5) as probe:
            while True:
                try:
                    if probe.ping():
                        return
                except redis.ConnectionError:
                    pass  # not listening yet
                try:
                    # Doubles as the poll interval and returns at once if the server died.
                    code: int | None = self.process.wait(timeout=0.05)
                except subprocess.TimeoutExpired:
                    code = None
                if code is not None or time.monotonic() >= deadline:
                    log = log_path.read_text(errors="replace") if log_path.exists() else "(no log)"
                    raise RuntimeError(f"redis-server on port {self.port} did not start ({code}):\n{log}")

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL) and wait for it."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server shared by the session; tests keep apart by key prefix."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_server_factory(tmp_path: Path) -> Iterator[Callable[[], RedisServer]]:
    """``factory()`` starts a redis-server of this test's own; all are stopped at teardown."""
    servers: list[RedisServer] = []

    def factory() -> RedisServer:
        server = RedisServer(tmp_path / f"redis-{len(servers)}").start()
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.stop()
