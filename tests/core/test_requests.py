"""core/requests.py: the one way from a validated request to the job a worker runs."""

from __future__ import annotations

from core.catalog import load_catalog
from core.jobs import RenderJob
from service.validation import parse_request

CATALOG = load_catalog(None)


def test_to_job_carries_every_rendering_field() -> None:
    params = parse_request({"prompt": "a red circle", "model": "gpt-image-1", "size": "1536x1024",
                            "seed": 5, "steps": 7, "output_format": "webp",
                            "output_compression": 30, "background": "transparent",
                            "input_fidelity": "high", "stream": True, "partial_images": 2,
                            "negative_prompt": "blurry", "strength": 0.4,
                            "scheduler": "euler-a"}, CATALOG, "edit")
    job = params.to_job("j1", "r1", private_id="p1", image_keys=["inputs/p1/image0.png"])
    assert job == RenderJob(
        job_id="j1", kind="edit", model="gpt-image-1", pipeline="shapes", prompt="a red circle",
        negative_prompt="blurry", width=1536, height=1024, n=1, seeds=[5], steps=7,
        guidance=5.0, output_format="webp", output_compression=30, strength=0.4,
        input_fidelity="high", background="transparent", partial_images=2,
        image_keys=["inputs/p1/image0.png"], private_id="p1", request_id="r1",
        scheduler="euler-a")
    # The payload crosses Redis as JSON and comes back the same.
    assert RenderJob.model_validate(job.model_dump(mode="json")) == job


def test_previews_only_when_streaming_and_a_private_id_always() -> None:
    params = parse_request({"prompt": "x", "model": "gpt-image-1", "partial_images": 2},
                           CATALOG)
    job = params.to_job("j2")
    assert job.partial_images == 0 and job.private_id and job.private_id != job.job_id
