"""What a preloaded LoRA adapter costs a request that uses none.

    python -m benchmarks.lora_overhead [--rounds 7] [--threads 2]

A default request's pipeline call (the embedded model, `best_of` 2, 256x256) as the worker makes
it, on two pipelines: one that never loaded an adapter, one with the catalog's `outline` adapter
preloaded and no adapter asked for.  The calls alternate, so drift of the machine hits both;
prints each one's median and the ratio (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import time
from typing import Any


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    import torch

    from core.catalog import load_catalog
    from models.loading import load_pipeline
    from models.reranking import Ask, generate_best

    torch.set_num_threads(args.threads)
    catalog = load_catalog(None)
    spec = catalog.pipelines["shapes"]
    plain = load_pipeline(spec)
    adapted = load_pipeline(spec)
    adapted.attach_adapters(catalog.adapters_of("shapes"), 0)

    def once(loaded: Any, seed: int) -> float:
        t = time.perf_counter()
        with loaded.use_adapters([]):
            generate_best(loaded, [Ask("a red circle left of a blue square", [seed], 2)], None,
                          spec.steps, spec.guidance, 256, 256)
        return time.perf_counter() - t

    once(plain, 0)
    once(adapted, 0)  # warm-up: the first call after a load sets the adapters
    times: dict[str, list[float]] = {"no adapter loaded": [], "adapter preloaded": []}
    for r in range(args.rounds):
        times["no adapter loaded"].append(once(plain, r))
        times["adapter preloaded"].append(once(adapted, r))
    medians = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    for k, v in times.items():
        print(f"{k:18s} median {medians[k] * 1000:.0f} ms  {[round(x * 1000) for x in v]}")
    print(f"ratio {medians['adapter preloaded'] / medians['no adapter loaded']:.3f}")


if __name__ == "__main__":
    main()
