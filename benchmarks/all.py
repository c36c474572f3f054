"""Every benchmark in one run, one after the other, then a summary of their goals.

Each benchmark starts (and stops) its own processes; a failing one is reported and the rest
still run.
"""

from __future__ import annotations

import argparse
import time
import traceback
from collections.abc import Callable

from benchmarks import batch_live, batching, encoding, gateway, overhead, scaleout, signing
from benchmarks.report import Report, machine_summary, table

BENCHMARKS: dict[str, Callable[[bool], Report]] = {
    "encoding": encoding.run, "overhead": overhead.run, "batching": batching.run,
    "scaleout": scaleout.run, "gateway": gateway.run, "signing": signing.run,
    "batch_live": batch_live.run,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every benchmark's quick mode")
    parser.add_argument("--only", nargs="*", choices=list(BENCHMARKS), help="a subset")
    args = parser.parse_args()
    print("== machine ==", *("  " + line for line in machine_summary()), sep="\n", flush=True)
    rows: list[list[object]] = []
    started = time.monotonic()
    for name in args.only or list(BENCHMARKS):
        t0 = time.monotonic()
        try:
            report = BENCHMARKS[name](args.quick)
        except Exception:
            traceback.print_exc()
            rows.append([name, "FAILED (see the traceback above)", "", "", ""])
            continue
        print(report.text(), f"  ({time.monotonic() - t0:.0f} s)", sep="\n", flush=True)
        rows += [[name, g.name, f"{g.value:.3f}", g.target, "met" if g.met else "NOT MET"]
                 for g in report.goals]
    print(f"== summary ({time.monotonic() - started:.0f} s) ==")
    print("\n".join(table(["benchmark", "goal", "value", "target", ""], rows)))
    print("== machine after ==", *("  " + line for line in machine_summary()), sep="\n")


if __name__ == "__main__":
    main()
