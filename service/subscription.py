"""One Redis pub/sub channel followed for the life of the gateway, through lost connections.

Pub/sub drops what is published while the connection is down, so after every (re)subscription
`on_subscribed` runs to catch up from state kept elsewhere; then each message's data goes to
`on_message`.  A lost connection is retried with backoff from 0.2 s up to 5 s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

from redis.exceptions import RedisError


async def follow_channel(redis: Any, channel: str, on_subscribed: Callable[[], Awaitable[None]],
                         on_message: Callable[[Any], None], lost: Callable[[Exception], None],
                         also_retry: tuple[type[Exception], ...] = ()) -> NoReturn:
    """`lost` is told each failure before the retry; `also_retry`: more exceptions that mean
    "start again" (a malformed message, say) besides Redis and socket errors."""
    retry: tuple[type[Exception], ...] = (RedisError, OSError, *also_retry)
    delay = 0.2
    while True:
        try:
            pubsub = redis.pubsub()
            await pubsub.subscribe(channel)
            delay = 0.2
            await on_subscribed()
            async for message in pubsub.listen():
                if message.get("type") == "message":
                    on_message(message["data"])
        except asyncio.CancelledError:
            raise
        except retry as exc:
            lost(exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
