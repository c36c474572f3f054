"""The SSE stream when storage fails under it: previews are skipped, a result that cannot be
read ends the stream with an error event — never a cut-off stream (chaos run finding)."""

from __future__ import annotations

import asyncio
import json

from core.jobs import Outcome, RenderResult
from core.storage import StorageError
from service.streaming import stream_events
from tests.service.test_gateway_metrics import Feed


def _events(read_fails_for: set[str]) -> list[tuple[str, dict[str, object]]]:
    async def outcome() -> Outcome:
        await asyncio.sleep(0.05)
        return Outcome(job_id="j", status="finished",
                       result=RenderResult(keys=["result"], seeds=[1], seconds=0.1))

    def read(key: str) -> bytes:
        if key in read_fails_for:
            raise StorageError(f"S3 get {key} failed: connection refused")
        return b"png"

    async def run() -> list[bytes]:
        feed = Feed([{"index": 0, "key": "preview0"}, {"index": 1, "key": "preview1"}])
        return [e async for e in stream_events("image_generation", {}, feed,  # type: ignore[arg-type]
                                               outcome(), read, {})]

    out = []
    for raw in asyncio.run(run()):
        head, data = raw.decode().strip().split("\n")
        out.append((head.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return out


def test_a_preview_storage_cannot_read_is_skipped_and_the_result_still_comes() -> None:
    events = _events({"preview0"})
    assert [name for name, _ in events] == ["image_generation.partial_image",
                                            "image_generation.completed"]
    assert events[0][1]["partial_image_index"] == 1


def test_a_result_storage_cannot_read_ends_the_stream_with_an_error_event() -> None:
    events = _events({"result"})
    assert events[-1][0] == "error"
    error = events[-1][1]["error"]
    assert isinstance(error, dict) and error["code"] == "storage_unavailable"


def test_a_waiting_stream_says_its_queue_place_in_comments_until_the_first_preview() -> None:
    """SSE comments (skipped by SDKs) carry the place: at once, then each quiet interval."""
    places = iter([2, 1, None, None, None, None])
    first_preview = asyncio.Event()

    async def position() -> int | None:
        place = next(places)
        if place is None:
            first_preview.set()  # the worker has it now: its preview follows
        return place

    class Later:
        """A preview that arrives once the job is rendering; then the result."""

        def __init__(self) -> None:
            self.items: asyncio.Queue[dict[str, object]] = asyncio.Queue()

        async def close(self) -> None:
            pass

    feed = Later()

    async def outcome() -> Outcome:
        await first_preview.wait()
        await feed.items.put({"index": 0, "key": "preview0"})
        await asyncio.sleep(0.1)  # quiet after the preview: no more comments
        return Outcome(job_id="j", status="finished",
                       result=RenderResult(keys=["result"], seeds=[1], seconds=0.1))

    async def run() -> list[bytes]:
        return [e async for e in stream_events("image_generation", {}, feed,  # type: ignore[arg-type]
                                               outcome(), lambda key: b"png", {},
                                               position=position, status_every=0.02)]

    raw = asyncio.run(run())
    comments = [e for e in raw if e.startswith(b":")]
    assert comments[:3] == [b": queue_position=2\n\n", b": queue_position=1\n\n",
                            b": rendering\n\n"]
    assert set(comments[3:]) <= {b": rendering\n\n"}  # a slow loop may say it twice
    events = [e.split(b"\n")[0] for e in raw if not e.startswith(b":")]
    assert events == [b"event: image_generation.partial_image",
                      b"event: image_generation.completed"]
