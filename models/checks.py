"""A checkpoint checked before it is loaded: what is wrong with it, said in words.

diffusers' own errors for a mistaken checkpoint are about JSON files and the Hub ("no
config.json", "not a valid JSON file", "turn on the internet"); these checks name the pipeline,
the folder and the fix before any weights are read.
"""

from __future__ import annotations

import json
from pathlib import Path

from models.families import FAMILIES

SUPPORTED = tuple(name for family in FAMILIES for name in family.pipelines)
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")
# A component folder must hold one of these (schedulers and tokenizers have no weights).
CONFIGS = ("config.json", "scheduler_config.json", "tokenizer_config.json", "vocab.json",
           "tokenizer.json", "spiece.model", "preprocessor_config.json")
WEIGHTS = (".safetensors", ".bin", ".pt", ".pth")
# Where the components a single file lacks come from, for the fix in the error message.
BASE_REPOS = {"FluxPipeline": "black-forest-labs/FLUX.1-dev",
              "StableDiffusion3Pipeline": "stabilityai/stable-diffusion-3-medium-diffusers"}


class CheckpointError(Exception):
    """A checkpoint Easel cannot serve: loading it again would fail the same way."""


def hub_cache_has(repo_id: str) -> bool:
    """Whether a Hub id has a snapshot in the local cache (workers never download)."""
    from huggingface_hub import constants

    folder = Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}" / "snapshots"
    return folder.is_dir() and any(folder.iterdir())


def _class_problem(class_name: str) -> str | None:
    if class_name in SUPPORTED:
        return None
    if "Inpaint" in class_name:
        return (f"{class_name} is an inpainting-only checkpoint: it cannot generate from a "
                "prompt alone. Use the text-to-image checkpoint of the same model (Easel "
                "derives edits and inpainting from it)")
    return (f"pipeline class {class_name} is not supported; supported: {', '.join(SUPPORTED)}")


def check_folder(folder: Path, weights: bool = True) -> None:
    """A diffusers pipeline folder: model_index.json, a supported class, every component (with
    its weights unless `weights` is False: a single file's config folder)."""
    index = folder / "model_index.json"
    if not index.is_file():
        if (folder / "config.json").is_file() or (folder / "diffusion_pytorch_model.safetensors"
                                                   ).exists():
            raise CheckpointError(f"{folder} is one component of a pipeline (a config.json, "
                                  "no model_index.json): point path at the pipeline folder "
                                  "that holds model_index.json")
        singles = sorted(p.name for p in folder.iterdir() if p.suffix in SINGLE_FILE_SUFFIXES)
        hint = (f"; it holds {', '.join(singles)}: point path at that file" if singles else "")
        raise CheckpointError(f"{folder} is not a diffusers pipeline folder (no "
                              f"model_index.json){hint}")
    try:
        data = json.loads(index.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{index} is not readable JSON: {exc}") from None
    problem = _class_problem(str(data.get("_class_name", "")))
    if problem:
        raise CheckpointError(problem)
    for name, value in data.items():
        if name.startswith("_") or not isinstance(value, list) or value[0] is None:
            continue
        component = folder / name
        if not component.is_dir():
            raise CheckpointError(f"component {name!r} ({value[1]}) is missing: no folder "
                                  f"{name}/ in {folder}")
        files = [p.name for p in component.iterdir()]
        if not any(f in CONFIGS for f in files):
            raise CheckpointError(f"component {name!r} in {component} has no configuration "
                                  f"(expected one of {', '.join(CONFIGS[:3])})")
        if weights and (component / "config.json").is_file() and \
                not any(f.endswith(WEIGHTS) for f in files):
            raise CheckpointError(f"component {name!r} in {component} has no weights "
                                  "(*.safetensors or *.bin)")
    unet = folder / "unet" / "config.json"
    if weights and unet.is_file() and json.loads(unet.read_text()).get("in_channels") == 9:
        raise CheckpointError(_class_problem("StableDiffusionInpaintPipeline") or "")


def check_single_file(file: Path, config: str) -> None:
    """A single .safetensors checkpoint and the config folder its components are built from."""
    if file.suffix != ".safetensors":
        raise CheckpointError(f"{file}: only .safetensors single files are loaded (a pickled "
                              ".ckpt can run code when read): convert it to .safetensors")
    if not config:
        raise CheckpointError(
            f"{file} is a single-file checkpoint: set `config` in its catalog entry to a folder "
            "with its pipeline's configs and tokenizers (the diffusers layout without the "
            "weights, e.g. `hf download stable-diffusion-v1-5/stable-diffusion-v1-5 --exclude "
            "'*.safetensors' '*.bin' '*.ckpt' --local-dir sd15-config`); Easel never fetches "
            "them at run time (docs/models.md)")
    if not Path(config).is_dir():
        raise CheckpointError(f"config folder {config} (for {file.name}) does not exist")
    check_folder(Path(config), weights=False)
    from safetensors import safe_open

    try:
        with safe_open(str(file), "pt") as f:
            keys = set(f.keys())
            conv_in = "model.diffusion_model.input_blocks.0.0.weight"
            shape = f.get_slice(conv_in).get_shape() if conv_in in keys else []
    except Exception as exc:  # a truncated download, or not a safetensors file at all
        raise CheckpointError(f"{file} is not a readable .safetensors file: {exc}") from None
    if len(shape) > 1 and shape[1] == 9:
        raise CheckpointError(_class_problem("StableDiffusionInpaintPipeline") or "")
    for name, (_, class_name) in absent_components(file, config).items():
        folder = Path(config) / name
        if not any(p.name.endswith(WEIGHTS) for p in folder.iterdir()):
            pipeline = json.loads((Path(config) / "model_index.json").read_text())["_class_name"]
            raise CheckpointError(
                f"{file.name} holds no {name} ({class_name}) weights (FLUX.1 files hold the "
                f"transformer alone, some SD3 files lack text encoders): put the base model's "
                f"{name}/ weights in the config folder, e.g. `hf download "
                f"{BASE_REPOS.get(pipeline, '<base model repo>')} --include '{name}/*' "
                f"--local-dir {config}`")


def absent_components(file: Path, config: str) -> dict[str, tuple[str, str]]:
    """The components of `config`'s pipeline whose weights `file` lacks, {name: (library,
    class)}: Easel loads them from the config folder's weights and passes them in.

    The tests are diffusers' own (`load_single_file_sub_model`): a text encoder comes from the
    file when it holds CLIP (or T5) keys, the VAE when it holds LDM VAE keys, the UNet or
    transformer always. Left to itself, diffusers fails on a missing VAE, and on a missing text
    encoder unless its weights bear diffusers' file names (not transformers' model.safetensors).
    """
    import importlib

    from diffusers.loaders import single_file_utils as sf
    from safetensors import safe_open

    with safe_open(str(file), "pt") as f:
        keys = set(f.keys())
    index = json.loads((Path(config) / "model_index.json").read_text())
    absent = {}
    for name, value in index.items():
        library = value[0] if isinstance(value, list) else None
        if library not in ("transformers", "diffusers") or \
                not (Path(config) / name / "config.json").is_file():
            continue  # schedulers and tokenizers (no weights), a safety checker Easel skips
        if library == "transformers":
            cls = getattr(importlib.import_module(library), value[1])
            inside = sf.is_clip_model_in_single_file(cls, keys) or sf.is_t5_in_single_file(keys)
        else:
            inside = name != "vae" or any(k.startswith(tuple(sf.LDM_VAE_KEYS)) for k in keys)
        if not inside:
            absent[name] = (library, value[1])
    return absent


def check_source(path: str, source: str, config: str = "") -> None:
    """Check what `resolve_path` made of a catalog path (and `config`) before loading it."""
    local = Path(source)
    if local.is_dir():
        check_folder(local)
    elif local.is_file():
        if local.suffix not in SINGLE_FILE_SUFFIXES:
            raise CheckpointError(f"{local} is a file but not a checkpoint (.safetensors); "
                                  "point path at a pipeline folder or a single file")
        check_single_file(local, config)
    elif not hub_cache_has(source):
        raise CheckpointError(
            f"{path!r} is neither a folder or file (no {Path(path).expanduser().absolute()}) "
            f"nor a Hub model in the local cache. Fix the path (relative paths are relative "
            f"to the catalog file), or download the model once on a machine that can (e.g. "
            f"`hf download {path}`) and mount its cache: workers never download")
