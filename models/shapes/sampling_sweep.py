"""Images per second against checker score, per sampler, step count and CPU precision.

    python -m models.shapes.sampling_sweep --per-cell 10 --json runs/sampling-sweep.json

Every setting draws the same prompts and seeds (models.shapes.evaluate) from the same pipeline
folder, so the pass rates compare samplers, not luck.  Speed is ms per image at batch 2 with
guidance (what a default `best_of` 2 request draws) on `--threads` torch threads; the ratio
column is the speed-up over the first setting, measured in this run.  `bf16` runs the pipeline
under CPU bfloat16 autocast (fast where the CPU has avx512_bf16 or AMX, many times slower where
it has not; weights stay fp32); `auto` does what a CPU worker does (bf16 where it is native).
A fifth field is the pipeline's `guided_fraction`: guidance only in the first share of steps.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from PIL import Image

from core.catalog import PipelineSpec
from models import rendering
from models.loading import LoadedPipeline
from models.scoring import Scorer
from models.shapes.evaluate import evaluate, time_per_image
from models.shapes.scorer import SHIPPED
from models.shapes.scorer_eval import report

DEFAULT_SETTINGS = ("fp32:own:20,auto:own:20,auto:own:20:5:0.6,auto:own:16:5:0.6,auto:own:14,"
                    "auto:dpm++2m-karras:14")


def sweep(model: Path, settings: list[str], per_cell: int, guidance: float,
          scorer: Scorer) -> dict[str, float]:
    """Each setting renders through models.rendering, the worker's own path, from a pipeline
    loaded as the worker loads it."""
    from models.loading import cpu_has_bf16, load_pipeline

    base = load_pipeline(PipelineSpec(name="shapes", path=str(model.resolve()), native_size=64))
    table: dict[str, float] = {}
    base_ms = 0.0
    for setting in settings:
        precision, sampler, steps, *rest = setting.split(":")
        cfg = float(rest[0]) if rest else guidance
        fraction = float(rest[1]) if len(rest) > 1 else 1.0
        autocast = cpu_has_bf16() if precision == "auto" else precision == "bf16"
        loaded = replace(base, autocast=autocast,
                         spec=replace(base.spec, guided_fraction=fraction))

        def generate(prompts: list[str], seeds: list[int], loaded: LoadedPipeline = loaded,
                     sampler: str = sampler, steps: int = int(steps),
                     cfg: float = cfg) -> list[Image.Image]:
            with loaded.use_scheduler(None if sampler == "own" else sampler):
                return rendering.generate_prompts(loaded, prompts, None, seeds, steps, cfg,
                                                  64, 64)

        result = evaluate(generate, per_cell, scorer=scorer)
        ms = time_per_image(generate, 2)
        base_ms = base_ms or ms
        for key in ("overall", "overall/seen", "overall/held-out", "pair/seen", "count/seen"):
            table[f"{setting} {key}"] = result[key]
        table[f"{setting} ms/image"] = ms
        table[f"{setting} speed-up"] = base_ms / ms
        print(f"{setting:28s} overall {result['overall']:.3f} (seen {result['overall/seen']:.3f}"
              f" held-out {result['overall/held-out']:.3f})  {ms:.0f} ms/image  "
              f"{base_ms / ms:.2f}x", flush=True)
    return table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", type=Path, default=Path(__file__).parent / "weights")
    p.add_argument("--settings", default=DEFAULT_SETTINGS,
                   help="comma-separated precision:sampler:steps[:guidance[:guided_fraction]] "
                        "(sampler: own or a core.rules.SCHEDULERS name; guidance: --guidance "
                        "when left out; guided_fraction: the catalog key, 1 when left out)")
    p.add_argument("--per-cell", type=int, default=10)
    p.add_argument("--guidance", type=float, default=5.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    table = sweep(args.model, args.settings.split(","), args.per_cell, args.guidance,
                  Scorer(SHIPPED))
    report(table, args.json)


if __name__ == "__main__":
    main()
