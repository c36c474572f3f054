"""A catalog reload announced by one gateway process is followed by the others, including one
whose subscription was down at the time; the announcer and newcomers do not reload again."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from service.catalog_sync import CatalogSync


def test_every_other_process_follows_a_reload(redis: Redis) -> None:
    url = "redis://{host}:{port}/0".format(**redis.connection_pool.connection_kwargs)

    async def until(check) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + 10
        while not check():
            assert time.monotonic() < deadline, "timed out"
            await asyncio.sleep(0.02)

    async def run() -> Counter[str]:
        client = AsyncRedis.from_url(url)
        reloads: Counter[str] = Counter()
        syncs = {name: CatalogSync(client, lambda name=name: reloads.update([name]))
                 for name in "abc"}
        tasks = {n: asyncio.create_task(syncs[n].run_forever()) for n in "ab"}
        await until(lambda: all(syncs[n].seen is not None for n in "ab"))
        await syncs["a"].announce()
        await until(lambda: reloads["b"] == 1)
        tasks["b"].cancel()  # b's subscription is down while a announces again
        await asyncio.gather(tasks["b"], return_exceptions=True)
        await syncs["a"].announce()
        tasks["b"] = asyncio.create_task(syncs["b"].run_forever())
        await until(lambda: reloads["b"] == 2)  # made up for once it is back
        tasks["c"] = asyncio.create_task(syncs["c"].run_forever())  # a process started now
        await until(lambda: syncs["c"].seen == 2)
        await asyncio.sleep(0.2)
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        await client.aclose()
        return reloads

    assert asyncio.run(run()) == Counter({"b": 2})
