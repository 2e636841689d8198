"""Running one benchmark case in its own process and measuring it: wall time, CPU time and peak memory.

Each case runs in a fresh ``python -m bench.<script> --case <json>`` child, so its peak resident memory is its own
(``os.wait4`` returns the child's rusage) and one case's caches cannot help the next. The child times only the
operation itself and prints one JSON line; the parent adds the child's peak RSS. A watchdog kills a child that
runs past its time limit or above its memory cap, and the case is reported as such rather than breaking the run.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Outcome:
    """One run of one case: seconds of the timed operation, its CPU seconds and the process's peak RSS in bytes."""

    seconds: float | None = None
    cpu_seconds: float | None = None
    peak_rss: int | None = None
    failure: str | None = None  # "timeout after 900 s", "killed above 16.0 GB", or the error's last line
    extra: dict[str, Any] = field(default_factory=dict)


@contextmanager
def timed() -> Iterator[dict[str, float]]:
    """Wall and CPU seconds of the block (CPU of every thread of this process, DuckDB's included)."""
    result: dict[str, float] = {}
    cpu0, wall0 = _cpu(), time.perf_counter()
    yield result
    result["seconds"] = time.perf_counter() - wall0
    result["cpu_seconds"] = _cpu() - cpu0


def report(result: dict[str, Any]) -> None:
    """What a child prints last: the JSON the parent reads."""
    print("BENCH-RESULT " + json.dumps(result), flush=True)


def run_case(module: str, case: dict[str, Any], timeout: float, memory_cap: int | None) -> Outcome:
    """Run ``python -m <module> --case <json>`` and measure it; never raises for a failing case."""
    command = [sys.executable, "-m", module, "--case", json.dumps(case)]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(command, cwd=REPO_ROOT, stdout=out, stderr=err, text=True)
        verdict: list[str] = []
        watchdog = threading.Thread(target=_watch, args=(child.pid, timeout, memory_cap, verdict), daemon=True)
        watchdog.start()
        _, status, usage = os.wait4(child.pid, 0)  # the child's own rusage: its peak RSS, not ours
        child.returncode = os.waitstatus_to_exitcode(status)
        watchdog.join()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    outcome = Outcome(peak_rss=usage.ru_maxrss * 1024)
    lines = [line for line in stdout.splitlines() if line.startswith("BENCH-RESULT ")]
    if verdict:
        outcome.failure = verdict[0]
    elif child.returncode == -signal.SIGKILL:  # from outside: the OOM killer of a memory-capped cgroup, say
        outcome.failure = f"killed (SIGKILL) at {gigabytes(outcome.peak_rss)}"
    elif child.returncode != 0 or not lines:
        tail = (stderr.strip().splitlines() or ["no output"])[-1]
        outcome.failure = f"failed: {tail[:160]}"
    else:
        result = json.loads(lines[-1].removeprefix("BENCH-RESULT "))
        outcome.seconds, outcome.cpu_seconds = result.pop("seconds"), result.pop("cpu_seconds")
        outcome.extra = result
    return outcome


def median(outcomes: list[Outcome]) -> Outcome:
    """The median time over the runs that finished, the largest peak; a failure if none finished."""
    done = [o for o in outcomes if o.failure is None]
    if not done:
        return outcomes[0]
    return Outcome(
        seconds=statistics.median(o.seconds for o in done if o.seconds is not None),
        cpu_seconds=statistics.median(o.cpu_seconds for o in done if o.cpu_seconds is not None),
        peak_rss=max(o.peak_rss or 0 for o in done),
        extra=done[0].extra,
    )


def gigabytes(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**30:.2f} GB"


def parse_size(text: str) -> int:
    """``16GB``, ``512MB`` or a number of bytes."""
    units = {"GB": 2**30, "MB": 2**20, "KB": 2**10}
    for suffix, factor in units.items():
        if text.upper().endswith(suffix):
            return int(float(text[: -len(suffix)]) * factor)
    return int(text)


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(f"\n{title}")
    for row in [header, ["-" * w for w in widths], *rows]:
        cells = [str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        print("  ".join(cells))


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _watch(pid: int, timeout: float, memory_cap: int | None, verdict: list[str]) -> None:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            verdict.append(f"timeout after {timeout:.0f} s")
            _kill(pid)
            return
        if memory_cap and _rss(pid) > memory_cap:
            verdict.append(f"killed above {memory_cap / 2**30:.1f} GB")
            _kill(pid)
            return
        time.sleep(0.2)


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists() and "zombie" not in _status(pid).get("State", "zombie")


def _rss(pid: int) -> int:
    value = _status(pid).get("VmRSS", "0 kB").split()[0]
    return int(value) * 1024


def _status(pid: int) -> dict[str, str]:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def _kill(pid: int) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, 9)
