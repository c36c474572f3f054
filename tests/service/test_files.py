"""The Files API in-process, through the official SDK (AsyncOpenAI over an ASGI transport), on a
private Redis: shapes, per-key ownership, limits, expiry and purge, privacy of the bytes, and
`file_id` in JSON edits."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from PIL import Image

from core.settings import GatewaySettings
from service.app import create_app
from service.auth import hash_key
from tests.support import RedisServer

KEYS = f"alice:{hash_key('sk-alice')},bob:{hash_key('sk-bob')}"


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 10, 10)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture()
def app(tmp_path: Path) -> Iterator[Any]:
    server = RedisServer(tmp_path / "redis").start()
    yield create_app(GatewaySettings(redis_url=server.url, storage_dir=tmp_path / "files",
                                     auth="required", api_keys=KEYS, files_max_bytes=4096))
    server.stop()


def _client(app: Any, key: str = "sk-alice") -> openai.AsyncOpenAI:
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                             base_url="http://127.0.0.1")
    return openai.AsyncOpenAI(base_url="http://127.0.0.1/v1", api_key=key, max_retries=0,
                              http_client=http)


async def _raw(app: Any, method: str, path: str, key: str = "sk-alice",
               **kw: Any) -> httpx.Response:
    # One event loop per test (asyncio.run around the whole test): the app's async Redis
    # connections belong to the loop that opened them.
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://127.0.0.1") as c:
        return await c.request(method, path, headers={"authorization": f"Bearer {key}"}, **kw)


def test_upload_list_retrieve_content_delete_through_the_sdk(app: Any) -> None:
    async def go() -> None:
        alice = _client(app)
        made = await alice.files.create(file=("in.jsonl", b'{"a": 1}\n'), purpose="batch")
        assert made.id.startswith("file-") and made.object == "file"
        assert (made.bytes, made.filename, made.purpose, made.status) == (
            9, "in.jsonl", "batch", "processed")
        assert made.expires_at is not None and made.expires_at > made.created_at
        image = await alice.files.create(file=("a.png", _png()), purpose="vision")
        listed = await alice.files.list()
        assert [f.id for f in listed.data] == [image.id, made.id]  # newest first
        assert [f.id for f in (await alice.files.list(purpose="batch")).data] == [made.id]
        page = await alice.files.list(limit=1, order="asc")
        assert [f.id for f in page.data] == [made.id] and page.has_more
        after = await alice.files.list(limit=1, order="asc", after=made.id)
        assert [f.id for f in after.data] == [image.id]
        assert (await alice.files.retrieve(made.id)).id == made.id
        assert (await alice.files.content(made.id)).content == b'{"a": 1}\n'
        gone = await alice.files.delete(made.id)
        assert gone.deleted and gone.id == made.id
        with pytest.raises(openai.NotFoundError):
            await alice.files.retrieve(made.id)

    asyncio.run(go())


def test_another_key_sees_none_of_my_files(app: Any) -> None:
    async def go() -> None:
        made = await _client(app).files.create(file=("in.jsonl", b"{}\n"), purpose="batch")
        bob = _client(app, "sk-bob")
        assert (await bob.files.list()).data == []
        for call in (bob.files.retrieve, bob.files.content, bob.files.delete):
            with pytest.raises(openai.NotFoundError):
                await call(made.id)  # type: ignore[operator]
        assert (await _client(app).files.retrieve(made.id)).id == made.id  # still there

    asyncio.run(go())


@pytest.mark.parametrize(("data", "fields", "param", "status"), [
    ({"purpose": "fine-tune"}, {}, "purpose", 400),
    ({}, {}, "purpose", 400),
    ({"purpose": "vision"}, {}, "file", 400),  # not an image
    ({"purpose": "batch", "expires_after[anchor]": "now",
      "expires_after[seconds]": "60"}, {}, "expires_after[anchor]", 400),
    ({"purpose": "batch", "expires_after[anchor]": "created_at",
      "expires_after[seconds]": "-5"}, {}, "expires_after[seconds]", 400),
    ({"purpose": "batch", "colour": "red"}, {}, "colour", 400),
    ({"purpose": "batch"}, {"file": ("big.jsonl", b"x" * 5000)}, "file", 400),
    ({"purpose": "batch"}, {"file": ("huge.jsonl", b"x" * 80_000)}, None, 413),
])
def test_bad_uploads_are_refused_naming_the_field(app: Any, data: dict[str, str],
                                                  fields: dict[str, Any], param: str | None,
                                                  status: int) -> None:
    files = fields or {"file": ("f.jsonl", b"{}\n")}
    r = asyncio.run(_raw(app, "POST", "/v1/files", data=data, files=files))
    assert r.status_code == status, r.text
    assert r.json()["error"]["param"] == param


def test_a_file_expires_and_the_purge_deletes_its_bytes(app: Any, tmp_path: Path) -> None:
    async def go() -> None:
        r = await _raw(app, "POST", "/v1/files", files={"file": ("f.jsonl", b"{}\n")},
                       data={"purpose": "batch", "expires_after[anchor]": "created_at",
                             "expires_after[seconds]": "1"})
        made = r.json()
        assert made["expires_at"] == made["created_at"] + 1
        stored = list((tmp_path / "files" / "stored").rglob("content"))
        assert len(stored) == 1
        deadline = time.time() + 5
        while (await _raw(app, "GET", f"/v1/files/{made['id']}")).status_code != 404:
            assert time.time() < deadline
            await asyncio.sleep(0.1)
        assert await app.state.files.purge() == 1
        assert not stored[0].exists()
        # The local purge of expired result images leaves files alone (they expire by their
        # own metadata).
        await _raw(app, "POST", "/v1/files", files={"file": ("g.jsonl", b"{}\n")},
                   data={"purpose": "batch"})
        assert app.state.storage.purge_older_than(-10) == 0

    asyncio.run(go())


def test_stored_bytes_are_never_served_as_public_files(app: Any, tmp_path: Path) -> None:
    async def go() -> None:
        await _raw(app, "POST", "/v1/files", files={"file": ("f.jsonl", b"{}\n")},
                   data={"purpose": "batch"})
        key = next((tmp_path / "files").rglob("content")).relative_to(tmp_path / "files")
        assert (await _raw(app, "GET", f"/files/{key}")).status_code == 404

    asyncio.run(go())
    key = next((tmp_path / "files").rglob("content")).relative_to(tmp_path / "files")
    with pytest.raises(Exception, match="only result images"):
        app.state.storage.url(str(key), "http://x")


def test_a_json_edit_takes_only_its_own_files(app: Any) -> None:
    async def go() -> None:
        made = (await _raw(app, "POST", "/v1/files", files={"file": ("a.png", _png())},
                           data={"purpose": "vision"})).json()
        body: dict[str, Any] = {"model": "gpt-image-1", "prompt": "x"}
        for key, file_id in (("sk-bob", made["id"]), ("sk-alice", "file-nope")):
            body["images"] = [{"file_id": file_id}]
            r = await _raw(app, "POST", "/v1/images/edits", key, json=body)
            assert r.status_code == 400, r.text
            assert r.json()["error"]["param"] == "images[0].file_id"
        body["images"] = [{"file_id": made["id"], "image_url": "data:,"}]
        r = await _raw(app, "POST", "/v1/images/edits", json=body)
        assert (r.status_code, r.json()["error"]["param"]) == (400, "images[0].file_id")
        body["images"] = [{"file_id": made["id"]}]
        body["mask"] = {"file_id": "file-nope"}
        r = await _raw(app, "POST", "/v1/images/edits", json=body)
        assert (r.status_code, r.json()["error"]["param"]) == (400, "mask.file_id")

    asyncio.run(go())


def test_a_large_upload_is_streamed_to_storage_not_held_in_memory(tmp_path: Path) -> None:
    """20 MB sent in 1 MB chunks with no Content-Length: the gateway's allocations stay a few
    MB (the file part is spooled to disk, then copied to storage a chunk at a time)."""
    import tracemalloc

    server = RedisServer(tmp_path / "redis").start()
    app = create_app(GatewaySettings(redis_url=server.url, storage_dir=tmp_path / "files",
                                     auth="off", files_max_bytes=30_000_000))
    boundary = "easelboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"big.jsonl\"\r\nContent-Type: application/jsonl\r\n\r\n").encode()
    chunk = b"x" * (1 << 20)

    async def body() -> Any:
        yield head
        for _ in range(20):
            yield chunk
        yield f"\r\n--{boundary}--\r\n".encode()

    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://127.0.0.1") as c:
            return await c.post("/v1/files", content=body(), headers={
                "content-type": f"multipart/form-data; boundary={boundary}"})

    try:
        tracemalloc.start()
        r = asyncio.run(go())
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    finally:
        server.stop()
    assert r.status_code == 200, r.text
    assert r.json()["bytes"] == 20 << 20
    print(f"peak Python allocations during a 20 MB upload: {peak / 2**20:.1f} MB")
    assert peak < 8 << 20
