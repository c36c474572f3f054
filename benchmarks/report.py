"""What every benchmark reports and how: goals, tables, percentiles, the CPU the rest of the
machine took during a measurement, and the command-line entry point."""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil


@dataclass
class Goal:
    name: str
    value: float
    target: str  # e.g. "<= 1.10", shown as written
    met: bool


@dataclass
class Report:
    title: str
    lines: list[str] = field(default_factory=list)  # tables, already formatted
    goals: list[Goal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def text(self) -> str:
        out = [f"== {self.title} ==", *self.lines]
        out += [f"  goal {g.name}: {g.value:.3f} (target {g.target}) "
                f"{'MET' if g.met else 'NOT MET'}" for g in self.goals]
        out += [f"  note: {n}" for n in self.notes]
        return "\n".join(out)


def table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    cells = [[f"{c:.3f}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:>{w}}}" for w in widths)
    return ["  " + fmt.format(*headers), *("  " + fmt.format(*r) for r in cells)]


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), without numpy."""
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def main(run: Callable[[bool], Report], doc: str | None) -> None:
    parser = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run (well under a minute)")
    args = parser.parse_args()
    print(run(args.quick).text(), flush=True)


# ---- CPU accounting -----------------------------------------------------------------------

class CpuMeter:
    """CPU used during a window: by this process tree (benchmark, gateway, workers, Redis)
    and by everything else on the machine (the background trainer, other sessions), in cores.

    Used as a context manager around a measured window, entered after the processes start.
    """

    def __enter__(self) -> CpuMeter:
        self._t0 = time.monotonic()
        self._sys0 = self._busy()
        self._ours0 = self._tree()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.monotonic() - self._t0
        ours1 = self._tree()
        ours = sum(t - self._ours0.get(pid, 0.0) for pid, t in ours1.items())
        self.total_cores = (self._busy() - self._sys0) / wall
        self.our_cores = ours / wall
        self.other_cores = max(0.0, self.total_cores - self.our_cores)
        self.load1 = os.getloadavg()[0]

    @staticmethod
    def _busy() -> float:
        t = psutil.cpu_times()
        return float(sum(t)) - t.idle - getattr(t, "iowait", 0.0)

    @staticmethod
    def _tree() -> dict[int, float]:
        me = psutil.Process()
        out = {}
        for p in [me, *me.children(recursive=True)]:
            try:
                c = p.cpu_times()
                out[p.pid] = c.user + c.system
            except psutil.Error:
                pass
        return out

    def summary(self) -> str:
        return (f"CPU during the window: this benchmark's processes {self.our_cores:.2f} cores, "
                f"everything else {self.other_cores:.2f} cores (of {psutil.cpu_count()}); "
                f"load average (1 min) {self.load1:.2f}")


def _autogroup(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/autogroup").read_text().split()[0].rsplit("-", 1)[-1]
    except OSError:
        return "?"


def machine_summary(sample: float = 2.0) -> list[str]:
    """Cores, load, and the busiest processes outside this one, sampled for `sample` s.

    With the kernel's autogroup scheduling on, CPU is shared between sessions first and `nice`
    acts only inside a session: a nice-10 job in another session still takes its share.
    """
    others = [p for p in psutil.process_iter(["cmdline"]) if p.pid != os.getpid()]
    for p in others:
        with contextlib.suppress(psutil.Error):
            p.cpu_percent(None)
    time.sleep(sample)
    busy = []
    for p in others:
        with contextlib.suppress(psutil.Error):
            pct = p.cpu_percent(None)
            if pct >= 5:
                cmd = " ".join(p.info["cmdline"] or [p.name()])[:70]
                busy.append((pct, f"{pct:5.0f}%  nice {p.nice():>2}  autogroup "
                                  f"{_autogroup(p.pid)}  {cmd}"))
    auto = Path("/proc/sys/kernel/sched_autogroup_enabled")
    lines = [f"cores {psutil.cpu_count()}, load average {os.getloadavg()[0]:.2f} / "
             f"{os.getloadavg()[1]:.2f} / {os.getloadavg()[2]:.2f}, autogroup scheduling "
             f"{'on' if auto.exists() and auto.read_text().strip() == '1' else 'off'} "
             f"(this session: autogroup {_autogroup(os.getpid())})",
             "busiest other processes:", *(b for _, b in sorted(busy, reverse=True)[:6])]
    return lines
