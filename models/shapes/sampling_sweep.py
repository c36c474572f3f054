"""Images per second against checker score, per sampler, step count and CPU precision.

    python -m models.shapes.sampling_sweep --per-cell 10 --json runs/sampling-sweep.json

Every setting draws the same prompts and seeds (models.shapes.evaluate) from the same pipeline
folder, so the pass rates compare samplers, not luck.  Speed is ms per image at batch 2 with
guidance (what a default `best_of` 2 request draws) on `--threads` torch threads; the ratio
column is the speed-up over the first setting, measured in this run.  `bf16` runs the pipeline
under CPU bfloat16 autocast (fast where the CPU has avx512_bf16 or AMX; weights stay fp32).
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from pathlib import Path

from PIL import Image

from core.rules import SCHEDULER_CLASSES
from models.scoring import Scorer
from models.shapes.evaluate import evaluate, time_per_image
from models.shapes.scorer import SHIPPED
from models.shapes.scorer_eval import report

DEFAULT_SETTINGS = ("fp32:own:20,bf16:own:20,bf16:own:14,bf16:dpm++2m-karras:14,"
                    "bf16:unipc:14,bf16:own:10")


@contextlib.contextmanager
def _precision(name: str) -> Iterator[None]:
    import torch

    if name == "bf16":
        with torch.autocast("cpu", dtype=torch.bfloat16):
            yield
    else:
        yield


def sweep(model: Path, settings: list[str], per_cell: int, guidance: float,
          scorer: Scorer) -> dict[str, float]:
    import diffusers
    import torch
    from diffusers import AutoPipelineForText2Image

    pipe = AutoPipelineForText2Image.from_pretrained(str(model.resolve()), dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    own = pipe.scheduler
    table: dict[str, float] = {}
    base_ms = 0.0
    for setting in settings:
        precision, sampler, steps, *scale = setting.split(":")
        cfg = float(scale[0]) if scale else guidance
        if sampler == "own":
            pipe.scheduler = own
        else:
            class_name, overrides = SCHEDULER_CLASSES[sampler]  # type: ignore[index]
            pipe.scheduler = getattr(diffusers, class_name).from_config(own.config, **overrides)

        def generate(prompts: list[str], seeds: list[int], precision: str = precision,
                     steps: int = int(steps), cfg: float = cfg) -> list[Image.Image]:
            gens = [torch.Generator("cpu").manual_seed(s) for s in seeds]
            with _precision(precision):
                out = pipe(prompts, num_inference_steps=steps, guidance_scale=cfg,
                           generator=gens)
            return list(out.images)

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
                   help="comma-separated precision:sampler:steps[:guidance] (sampler: own or "
                        "a core.rules.SCHEDULERS name; guidance: --guidance when left out)")
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
