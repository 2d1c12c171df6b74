"""The DuckDB warehouse: connections that wait for another process's lock, views over the lake."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from dagster_project import processes
from dagster_project.lake.layout import Table

if TYPE_CHECKING:
    import tenacity

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _quote_identifier(name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return f'"{name}"'


def _quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# How long a connection waits for another process's lock on the warehouse file by default
# (settings: PERMAFROST_WAREHOUSE_LOCK_WAIT_SECONDS).
DEFAULT_LOCK_WAIT_SECONDS = 60.0
# Pauses between tries on a locked file: short at first (a reader's query is often brief), at
# most a second so a writer notices soon after the holder lets go.
FIRST_LOCK_PAUSE_SECONDS = 0.05
LONGEST_LOCK_PAUSE_SECONDS = 1.0
_PID = re.compile(r"\(PID (\d+)\)")


class WarehouseLockedError(RuntimeError):
    """Another process held the warehouse file for longer than this process would wait."""


def lock_holder(error_text: str) -> str | None:
    """'PID n (command line)' of the process DuckDB names in a lock error, when it names one."""
    found = _PID.search(error_text)
    if not found:
        return None
    pid = int(found.group(1))
    command = processes.command_line(pid)
    if pid == os.getpid():
        return f"PID {pid} (this process)"
    return f"PID {pid} ({command})" if command else f"PID {pid} (no longer running, or not visible from here)"


def is_lock_error(error: BaseException) -> bool:
    return isinstance(error, duckdb.IOException) and "Could not set lock on file" in str(error)


def lock_error_message(warehouse_path: Path, error_text: str, waited_seconds: float) -> str:
    holder = lock_holder(error_text) or "another process"
    return (
        f"warehouse {warehouse_path} is locked by {holder}; waited {waited_seconds:.0f} s "
        f"(PERMAFROST_WAREHOUSE_LOCK_WAIT_SECONDS). Close that connection (a notebook or a shell "
        f"holding the warehouse open), or query the lake's Parquet files instead (README, Fault guide). "
        f"DuckDB said: {error_text}"
    )


def lock_retrying(
    warehouse_path: Path, wait_seconds: float, sleep: Callable[[float], None] = time.sleep
) -> tenacity.Retrying:
    """Calls retried while DuckDB reports another process's lock on `warehouse_path`: pauses of
    0.05 s doubling up to 1 s (the last one cut to the wait left), for up to `wait_seconds`, then
    `WarehouseLockedError` naming the holder. Any other error is raised at once."""
    import tenacity  # here, not at module level: loading the definitions never needs it

    backoff = tenacity.wait_exponential(multiplier=FIRST_LOCK_PAUSE_SECONDS, max=LONGEST_LOCK_PAUSE_SECONDS)

    def pause(attempt: tenacity.RetryCallState) -> float:
        return min(backoff(attempt), max(0.0, wait_seconds - attempt.seconds_since_start))

    def give_up(attempt: tenacity.RetryCallState) -> None:
        error = attempt.outcome.exception()
        message = lock_error_message(warehouse_path, str(error), attempt.seconds_since_start)
        raise WarehouseLockedError(message) from error

    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(is_lock_error),
        stop=tenacity.stop_after_delay(wait_seconds),
        wait=pause,
        sleep=sleep,
        retry_error_callback=give_up,
    )


@contextmanager
def connect(
    warehouse_path: Path,
    read_only: bool = False,
    wait_seconds: float = DEFAULT_LOCK_WAIT_SECONDS,
    filesystem: object | None = None,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A DuckDB connection to the warehouse, waiting up to `wait_seconds` for another process's
    lock (DuckDB allows one writer, or any number of readers, per file), then failing with
    `WarehouseLockedError` naming the process that holds it. `filesystem`: an fsspec file system
    registered on the connection (a lake on an object store: its views read `s3://` through it)."""
    warehouse_path = Path(warehouse_path)
    if not read_only:
        warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    con = lock_retrying(warehouse_path, wait_seconds)(duckdb.connect, str(warehouse_path), read_only=read_only)
    try:
        if filesystem is not None:
            con.register_filesystem(filesystem)
        yield con
    finally:
        con.close()


def wait_until_writable(warehouse_path: Path, wait_seconds: float = DEFAULT_LOCK_WAIT_SECONDS) -> None:
    """Return once no other process holds the warehouse (a write connection opens and closes),
    or raise `WarehouseLockedError` after `wait_seconds`. For writers that open the file
    themselves (dbt): narrows, not closes, the window in which a reader can take it first."""
    with connect(warehouse_path, read_only=False, wait_seconds=wait_seconds):
        pass


def refresh_parquet_views(
    warehouse_path: Path,
    views: Mapping[Table, str],
    wait_seconds: float = DEFAULT_LOCK_WAIT_SECONDS,
    filesystem: object | None = None,
) -> None:
    """(Re)create each view over the Parquet files its glob (absolute) matches, in one connection
    (`filesystem`: as `connect`)."""
    with connect(warehouse_path, read_only=False, wait_seconds=wait_seconds, filesystem=filesystem) as con:
        for table, parquet_glob in views.items():
            con.execute(f"create schema if not exists {_quote_identifier(table.schema)}")
            con.execute(
                f"create or replace view {_quote_identifier(table.schema)}.{_quote_identifier(table.name)} as "
                f"select * from read_parquet({_quote_literal(parquet_glob)}, union_by_name = true)"
            )


@contextmanager
def read_only(
    warehouse_path: Path, wait_seconds: float = DEFAULT_LOCK_WAIT_SECONDS, filesystem: object | None = None
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only DuckDB connection; fails clearly if the warehouse was never built
    (`filesystem`: as `connect`)."""
    warehouse_path = Path(warehouse_path)
    if not warehouse_path.exists():
        raise FileNotFoundError(
            f"warehouse {warehouse_path} does not exist yet: materialize the dbt models (or run `make demo`) first"
        )
    with connect(warehouse_path, read_only=True, wait_seconds=wait_seconds, filesystem=filesystem) as con:
        yield con
