"""A catalog reload reaches every gateway process, not only the one that answered it.

`POST /v1/admin/catalog/reload` lands on one of the processes sharing the port (cli/serve.py),
or on one of several gateways.  That one reads EASEL_MODELS_FILE again and then `announce`s it:
a generation number in Redis goes up and is published.  Every other process hears it (or, when
its subscription was down, finds the number changed once it is back) and reads its own file
again, so requests see the same models whichever process takes them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from service.subscription import follow_channel

log = logging.getLogger("easel.gateway")
CHANNEL = "easel:gateways:catalog"
GENERATION = "easel:gateways:catalog-generation"


class CatalogSync:
    def __init__(self, redis: Any, reload: Callable[[], None]) -> None:
        self.redis = redis
        self.reload = reload  # reads the file again and installs it here (service.admin)
        self.seen: int | None = None  # the generation this process's catalog is from

    async def announce(self) -> None:
        """This process just reloaded: every other one is to follow."""
        self.seen = int(await self.redis.incr(GENERATION))
        await self.redis.publish(CHANNEL, str(self.seen))

    def _follow(self, generation: int) -> None:
        if self.seen is not None and generation != self.seen:
            try:
                self.reload()
            except Exception as exc:  # a file broken since: keep serving the catalog we have
                log.error("catalog reload announced by another gateway failed: %s", exc)
        self.seen = generation

    async def run_forever(self) -> None:
        async def catch_up() -> None:
            # Announcements missed while away (or none yet: this start's catalog is current).
            self._follow(int(await self.redis.get(GENERATION) or 0))

        await follow_channel(
            self.redis, CHANNEL, catch_up, lambda data: self._follow(int(data)),
            lambda exc: log.debug("catalog announcements unavailable (%s); retrying", exc),
            also_retry=(ValueError,))
