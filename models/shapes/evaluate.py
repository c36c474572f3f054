"""Evaluate the default model with the automatic checker.

    python -m models.shapes.evaluate --model models/shapes/weights --per-cell 25

Prompts are drawn from the grammar (a fixed seed), per caption kind and for seen and held-out
colour-shape pairs; each image is judged by `models.shapes.checker.check`.  Prints the pass rate
per cell and overall, plus ms per image at batch 1 and batch 8 (one thread on CPU).
With `--api URL` the images come from a running Easel gateway instead of a direct pipeline call
(`--best-of K` / `--quality Q` set those request fields; request latency p50/p90 is reported).
Every cell also gets a CLIP-style score: the mean similarity (cosine x 100) of its images to
their prompts by the shapes scorer (models/shapes/scorer.py; `--scorer`), for any model.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import random
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from models.scoring import Scorer
from models.shapes.checker import check
from models.shapes.scorer import SHIPPED
from models.shapes.world import KINDS, Scene, sample_scene

Generate = Callable[[list[str], list[int]], list[Image.Image]]


def eval_scenes(per_cell: int, seed: int = 7) -> list[tuple[Scene, bool]]:
    rng = random.Random(seed)
    return [(sample_scene(rng, kind, held), held)
            for kind in KINDS for held in (False, True) for _ in range(per_cell)]


def pipeline_generator(model_dir: Path, steps: int, guidance: float, device: str,
                       cpu_autocast: bool = False) -> Generate:
    """Images from a direct pipeline call; `cpu_autocast`: under bfloat16 autocast, as a CPU
    worker renders by default (EASEL_CPU_AUTOCAST)."""
    import contextlib

    import torch
    from diffusers import AutoPipelineForText2Image

    dtype = torch.float32 if device == "cpu" else torch.float16
    pipe = AutoPipelineForText2Image.from_pretrained(str(model_dir.resolve()), dtype=dtype)
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)

    def generate(prompts: list[str], seeds: list[int]) -> list[Image.Image]:
        gens = [torch.Generator(device).manual_seed(s) for s in seeds]
        with (torch.autocast("cpu", dtype=torch.bfloat16) if cpu_autocast
              else contextlib.nullcontext()):
            out = pipe(prompts, num_inference_steps=steps, guidance_scale=guidance,
                       generator=gens)
        return list(out.images)

    return generate


def api_generator(base_url: str, model: str, size: str, api_key: str,
                  extra: dict[str, object] | None = None,
                  latencies: list[float] | None = None) -> Generate:
    """Images from a running gateway, one request each; `extra`: Easel fields (best_of,
    quality, ...); each request's seconds are appended to `latencies`."""
    from openai import OpenAI

    client = OpenAI(base_url=base_url, api_key=api_key, max_retries=0)

    def generate(prompts: list[str], seeds: list[int]) -> list[Image.Image]:
        images: list[Image.Image] = []
        for prompt, seed in zip(prompts, seeds, strict=True):
            t0 = time.perf_counter()
            resp = client.images.generate(model=model, prompt=prompt, size=size,  # type: ignore[arg-type]
                                          response_format="b64_json",
                                          extra_body={"seed": seed, **(extra or {})})
            if latencies is not None:
                latencies.append(time.perf_counter() - t0)
            b64 = resp.data[0].b64_json if resp.data else None
            images.append(Image.open(io.BytesIO(base64.b64decode(b64 or ""))))
        return images

    return generate


def save_grid(images: list[Image.Image], path: Path, captions: list[str],
              passed: list[bool], columns: int = 8, cell: int = 128) -> None:
    """A labelled grid: each image with its prompt, framed green (checker pass) or red."""
    from PIL import ImageDraw

    rows = (len(images) + columns - 1) // columns
    label = 30
    grid = Image.new("RGB", (columns * (cell + 8), rows * (cell + 8 + label)), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for i, (im, caption, ok) in enumerate(zip(images, captions, passed, strict=True)):
        x, y = (i % columns) * (cell + 8), (i // columns) * (cell + 8 + label)
        draw.rectangle((x, y, x + cell + 5, y + cell + 5), fill=(40, 160, 60) if ok
                       else (200, 40, 40))
        grid.paste(im.convert("RGB").resize((cell, cell), Image.Resampling.LANCZOS),
                   (x + 3, y + 3))
        lines = textwrap.wrap(caption, 21)  # about the cell width in the default font
        draw.multiline_text((x + 2, y + cell + 7), "\n".join(lines[:2]), fill=(0, 0, 0),
                            spacing=1)
    grid.save(path)


def evaluate(generate: Generate, per_cell: int, batch: int = 16,
             grid: Path | None = None, scorer: Scorer | None = None) -> dict[str, float]:
    """Pass rates per cell (and `clip/<cell>`, the scorer's mean similarity, with `scorer`);
    `grid` saves the first four images of every cell, labelled."""
    scenes = eval_scenes(per_cell)
    passed: dict[str, list[bool]] = {}
    clip: dict[str, list[float]] = {}
    shown: list[tuple[Image.Image, str, bool]] = []
    for i in range(0, len(scenes), batch):
        chunk = scenes[i:i + batch]
        images = generate([s.caption for s, _ in chunk], [1000 + i + j for j in range(len(chunk))])
        sims = scorer.score(images, [s.caption for s, _ in chunk]) if scorer else []
        for j, ((scene, held), image) in enumerate(zip(chunk, images, strict=True)):
            key = f"{scene.kind}/{'held-out' if held else 'seen'}"
            ok = check(image, scene)
            passed.setdefault(key, []).append(ok)
            if sims:
                clip.setdefault(key, []).append(sims[j])
            if (i + j) % per_cell < 4:  # the first four of every cell, in order
                shown.append((image, scene.caption, ok))
    if grid is not None and shown:
        save_grid([s[0] for s in shown], grid, [s[1] for s in shown], [s[2] for s in shown])
    table = {k: sum(v) / len(v) for k, v in passed.items()}
    every = [x for v in passed.values() for x in v]
    table["overall"] = sum(every) / len(every)
    for group in ("seen", "held-out"):
        cell = [x for k, v in passed.items() if k.endswith("/" + group) for x in v]
        table[f"overall/{group}"] = sum(cell) / len(cell)
    for k, v in clip.items():
        table[f"clip/{k}"] = sum(v) / len(v)
    if clip:
        every_clip = [x for v in clip.values() for x in v]
        table["clip/overall"] = sum(every_clip) / len(every_clip)
    return table


def time_per_image(generate: Generate, batch: int, repeats: int = 3) -> float:
    generate(["a red circle"] * batch, list(range(batch)))  # warm-up
    t = time.perf_counter()
    for r in range(repeats):
        generate(["a blue square to the left of a red circle"] * batch, [r] * batch)
    return (time.perf_counter() - t) / (repeats * batch) * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", type=Path, default=Path(__file__).parent / "weights")
    p.add_argument("--per-cell", type=int, default=25, help="prompts per kind x seen/held-out")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--guidance", type=float, default=3.0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cpu-autocast", action="store_true",
                   help="render under bfloat16 autocast (as CPU workers do by default)")
    p.add_argument("--timing", action="store_true", help="also time batch 1 and batch 8")
    p.add_argument("--api", help="gateway base URL, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--api-model", default="dall-e-2")
    p.add_argument("--api-size", default="256x256")
    p.add_argument("--api-key", default="sk-local")
    p.add_argument("--best-of", type=int, help="API: the request's best_of (default: unset)")
    p.add_argument("--quality", help="API: the request's quality (default: unset)")
    p.add_argument("--scorer", type=Path, default=SHIPPED,
                   help="CLIP-style scorer for the clip/* columns")
    p.add_argument("--json", type=Path, help="also write the table here")
    p.add_argument("--grid", type=Path, help="save a labelled sample grid (4 per cell)")
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    latencies: list[float] = []
    if args.api:
        extra = {k: v for k, v in (("best_of", args.best_of), ("quality", args.quality)) if v}
        gen = api_generator(args.api, args.api_model, args.api_size, args.api_key, extra,
                            latencies)
    else:
        gen = pipeline_generator(args.model, args.steps, args.guidance, args.device,
                                 args.cpu_autocast)
    table = evaluate(gen, args.per_cell, grid=args.grid, scorer=Scorer(args.scorer))
    if latencies:
        ordered = sorted(latencies)
        table["ms_request_p50"] = 1000 * ordered[len(ordered) // 2]
        table["ms_request_p90"] = 1000 * ordered[int(len(ordered) * 0.9)]
    if args.timing and not args.api:
        table["ms_per_image_batch1"] = time_per_image(gen, 1)
        table["ms_per_image_batch8"] = time_per_image(gen, 8)
    for k, v in table.items():
        print(f"{k:24s} {v:.3f}" if not k.startswith("ms_") else f"{k:24s} {v:.0f}")
    if args.json:
        args.json.write_text(json.dumps(table, indent=2) + "\n")


if __name__ == "__main__":
    main()
