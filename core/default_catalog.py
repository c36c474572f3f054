"""The built-in model catalog: the embedded default model under its own id and the OpenAI ids
clients send (docs/models.md has the key reference). Kept apart from core/catalog.py, which
reads and checks catalogs."""

DEFAULT_CATALOG_TOML = """
# The embedded default model, served under its own id and the dall-e aliases.
[pipelines.shapes]
path = "embedded:shapes"
native_size = 64
# Every step guided: ending guidance after 60% of 16 steps is 1.25x faster but draws held-out
# colour-shape pairs less often (0.60 vs 0.66 through the API; docs/benchmarks.md).
steps = 20
guidance = 5.0
max_steps = 100
strength = 0.6
transparency = "white-key"
# DALL·E 1-style reranking: each image is the best of `best_of` candidates by this small CLIP
# (models/shapes/scorer.py); `quality` scales the count (core.rules.QUALITY_BEST_OF): low 1,
# standard 2 (the latency budget), high and hd 4 (models/shapes/MODEL_CARD.md).
scorer = "embedded:shapes-scorer"
best_of = 2

# A LoRA adapter trained for it (models/shapes/train_lora.py): shapes drawn as outlines.
[adapters.outline]
path = "embedded:shapes-outline"
pipelines = ["shapes"]
scale = 1.0
description = "draws every shape as an outline in its colour, white inside"

[[models]]
id = "easel-shapes"
pipeline = "shapes"
family = "easel"
description = "Easel's embedded shapes-world model (64 px native, upscaled above)"

[[models]]
id = "dall-e-2"
pipeline = "shapes"
family = "dall-e-2"
description = "alias of easel-shapes with dall-e-2 rules"

[[models]]
id = "dall-e-3"
pipeline = "shapes"
family = "dall-e-3"
description = "alias of easel-shapes with dall-e-3 rules"

[[models]]
id = "gpt-image-1"
pipeline = "shapes"
family = "gpt-image"
description = "alias of easel-shapes with gpt-image rules (b64_json, streaming)"

[[models]]
id = "gpt-image-1.5"
pipeline = "shapes"
family = "gpt-image"
description = "alias of easel-shapes with gpt-image rules (b64_json, streaming)"

[[models]]
id = "gpt-image-1-mini"
pipeline = "shapes"
family = "gpt-image"
description = "alias of easel-shapes with gpt-image rules (b64_json, streaming)"

[[models]]
id = "gpt-image-2"
pipeline = "shapes"
family = "gpt-image-2"
description = "alias of easel-shapes with gpt-image-2 rules (any WxH in multiples of 16)"

[[models]]
id = "chatgpt-image-latest"
pipeline = "shapes"
family = "gpt-image-2"
description = "alias of easel-shapes with gpt-image-2 rules (the newest OpenAI image model)"
"""
