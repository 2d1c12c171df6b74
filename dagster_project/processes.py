"""Which local process is which: alive or gone, when it started, its command line (from /proc).

Used to tell a crashed writer's leftovers from a live one's (lake temporaries, Dagster runs
whose worker died) and to name the process holding the warehouse lock. Plain Python.
"""

from __future__ import annotations

import functools
import hashlib
import os
import socket
import time
from pathlib import Path

PROC = Path("/proc")
# A process counts as the owner of something created at time t only if it started before t;
# the slack covers clock granularity (/proc start times are in clock ticks since boot).
START_SLACK_SECONDS = 2.0


@functools.cache
def host_tag() -> str:
    """Eight hex digits naming this host, safe in a file name (hostnames may hold dots)."""
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


@functools.cache
def _boot_time() -> float | None:
    try:
        for line in (PROC / "stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except OSError:
        pass
    return None


def start_time(pid: int) -> float | None:
    """When process `pid` started (epoch seconds), or None if it does not exist or /proc is absent."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    boot = _boot_time()
    if boot is None:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after its last ')'
    fields = stat[stat.rindex(")") + 2 :].split()
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def time_since_start(pid: int | None = None) -> float:
    """Seconds since process `pid` (default: this one) started; 0 when /proc cannot say."""
    started = start_time(os.getpid() if pid is None else pid)
    return 0.0 if started is None else max(0.0, time.time() - started)


def is_alive(pid: int, since: float | None = None) -> bool:
    """Whether process `pid` exists (and, given `since`, started before then: not a reused pid)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    if _is_zombie(pid):
        return False  # killed, not yet reaped by its parent
    started = start_time(pid) if since is not None else None
    return started is None or started <= since + START_SLACK_SECONDS


def _is_zombie(pid: int) -> bool:
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2 :].startswith("Z")


def command_line(pid: int, limit: int = 200) -> str | None:
    """The command line of process `pid`, shortened to `limit` characters, or None if unknown."""
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return None
    text = " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)
    return text if len(text) <= limit else text[: limit - 3] + "..."
