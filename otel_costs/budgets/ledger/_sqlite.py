"""``SqliteLedger``: the ledger in a SQLite file, shared by the processes of one host.

Every operation is one ``BEGIN IMMEDIATE`` transaction (``LocalLedger`` writes the operations;
this module supplies the SQL), so check-and-reserve and commit are atomic across processes.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Final

from otel_costs.budgets.ledger._base import Counter, CounterUsage, LedgerUnavailable, LocalLedger

_SQLITE_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS spend (
    counter TEXT NOT NULL,
    bucket TEXT NOT NULL,
    nanos INTEGER NOT NULL,
    keep_until REAL NOT NULL,
    PRIMARY KEY (counter, bucket)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS spend_keep_until ON spend (keep_until);
CREATE TABLE IF NOT EXISTS reservation (
    id TEXT NOT NULL,
    counter TEXT NOT NULL,
    nanos INTEGER NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (id, counter)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS reservation_counter ON reservation (counter, expires_at);
CREATE INDEX IF NOT EXISTS reservation_expires ON reservation (expires_at);
CREATE TABLE IF NOT EXISTS marker (
    key TEXT PRIMARY KEY,
    until REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS marker_until ON marker (until);
"""


#: Insert a marker, or take over an expired one: exactly one transaction sees a change.
_CLAIM_SQL: Final = (
    "INSERT INTO marker (key, until) VALUES (?, ?) "
    "ON CONFLICT (key) DO UPDATE SET until = excluded.until WHERE marker.until <= ?"
)
_ADD_SQL: Final = (
    "INSERT INTO spend (counter, bucket, nanos, keep_until) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (counter, bucket) DO UPDATE SET nanos = nanos + excluded.nanos, "
    "keep_until = MAX(keep_until, excluded.keep_until)"
)


class _Transaction:
    """One BEGIN IMMEDIATE transaction under the ledger's lock; SQLite errors -> ``LedgerUnavailable``."""

    __slots__ = ("_conn", "_ledger")

    def __init__(self, ledger: SqliteLedger) -> None:
        self._ledger = ledger

    def __enter__(self) -> sqlite3.Connection:
        lock = self._ledger._lock
        lock.acquire()
        try:
            self._conn = self._ledger._connection()
            self._conn.execute("BEGIN IMMEDIATE")
        except BaseException as exc:
            lock.release()
            if isinstance(exc, sqlite3.Error):
                raise self._ledger._failed(exc) from exc
            raise
        return self._conn

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        try:
            self._conn.execute("COMMIT" if exc is None else "ROLLBACK")
        except sqlite3.Error as error:
            raise self._ledger._failed(error) from error
        finally:
            self._ledger._lock.release()
        if isinstance(exc, sqlite3.Error):
            raise self._ledger._failed(exc) from exc


class SqliteLedger(LocalLedger[sqlite3.Connection]):
    """A ledger in a SQLite file: survives restarts, shared by the processes of one host.

    Each operation is a single ``BEGIN IMMEDIATE`` transaction (the write lock is taken before
    the read), so two processes can never both admit the last dollar. WAL journaling lets
    readers proceed while a writer commits. Not for network file systems (NFS locking is unreliable):
    use ``RedisLedger`` across hosts.

    Example: ``SqliteLedger("/var/lib/myapp/budgets.sqlite3")``.
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_s: float = 5.0) -> None:
        if busy_timeout_s <= 0:
            raise ValueError(f"busy_timeout_s must be > 0 seconds, got {busy_timeout_s!r}")
        self.path = Path(path)
        self._busy_timeout_s = busy_timeout_s
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        # Create the schema now, so a bad path fails at construction with a clear error.
        with self._lock:
            self._connection()

    def _connection(self) -> sqlite3.Connection:
        # A connection must not cross a fork: reopen in a child process.
        if self._conn is None or self._pid != os.getpid():
            try:
                conn = sqlite3.connect(
                    self.path,
                    timeout=self._busy_timeout_s,
                    isolation_level=None,
                    check_same_thread=False,
                )
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.executescript(_SQLITE_SCHEMA)
            except sqlite3.Error as exc:
                raise LedgerUnavailable(f"cannot open SQLite ledger {str(self.path)!r}: {exc}") from exc
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def _step(self) -> AbstractContextManager[sqlite3.Connection]:
        return _Transaction(self)

    def _failed(self, exc: sqlite3.Error) -> LedgerUnavailable:
        return LedgerUnavailable(f"SQLite ledger {str(self.path)!r} failed: {exc}")

    @staticmethod
    def _spent(conn: sqlite3.Connection, counter: Counter) -> int:
        marks = ",".join("?" * len(counter.read_buckets))
        row = conn.execute(
            f"SELECT COALESCE(SUM(nanos), 0) FROM spend WHERE counter = ? AND bucket IN ({marks})",
            (counter.key, *counter.read_buckets),
        ).fetchone()
        return int(row[0])

    def _read(self, tx: sqlite3.Connection, counters: Sequence[Counter], now: float) -> list[CounterUsage]:
        usages = []
        for counter in counters:
            row = tx.execute(
                "SELECT COALESCE(SUM(nanos), 0) FROM reservation WHERE counter = ? AND expires_at > ?",
                (counter.key, now),
            ).fetchone()
            usages.append(CounterUsage(self._spent(tx, counter), int(row[0])))
        return usages

    def _hold(
        self,
        tx: sqlite3.Connection,
        reservation_id: str,
        counters: Sequence[Counter],
        amount: int,
        expires_at: float,
    ) -> None:
        tx.executemany(
            "INSERT OR REPLACE INTO reservation (id, counter, nanos, expires_at) VALUES (?, ?, ?, ?)",
            [(reservation_id, c.key, amount, expires_at) for c in counters],
        )

    def _drop(self, tx: sqlite3.Connection, reservation_id: str) -> None:
        tx.execute("DELETE FROM reservation WHERE id = ?", (reservation_id,))

    def _claim(self, tx: sqlite3.Connection, marker: str, until: float, now: float) -> bool:
        return tx.execute(_CLAIM_SQL, (marker, until, now)).rowcount == 1

    def _add(self, tx: sqlite3.Connection, counter: Counter, amount: int) -> int:
        tx.execute(_ADD_SQL, (counter.key, counter.write_bucket, amount, counter.keep_until))
        return self._spent(tx, counter)

    def _collect(self, tx: sqlite3.Connection, now: float) -> None:
        tx.execute("DELETE FROM spend WHERE keep_until < ?", (now,))
        tx.execute("DELETE FROM reservation WHERE expires_at <= ?", (now,))
        tx.execute("DELETE FROM marker WHERE until <= ?", (now,))

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None
