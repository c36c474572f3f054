"""The prompt gate every image request passes before admission: the moderation level that
applies, the prompt policy (service/moderation.py), then the optional rewriter (service/rewrite.py).

It returns the request's parameters with the prompt to render, the level the worker's output
classifier uses, and `revised_prompt`: the rendered prompt for dall-e-3 ids (OpenAI returns it
there) and for any prompt the rewriter changed; null otherwise.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Literal, cast

from prometheus_client import CollectorRegistry

from core.requests import ImageParams
from core.settings import GatewaySettings
from service.moderation import PromptPolicy, blocked_counter, parse_key_levels, refuse
from service.rewrite import Rewriter

log = logging.getLogger("easel.gateway")
Level = Literal["auto", "low", "off"]
REVISED_FAMILIES = ("dall-e-3",)


class PromptGate:
    def __init__(self, settings: GatewaySettings, registry: CollectorRegistry) -> None:
        self.policy = PromptPolicy.load(settings.moderation_lists)
        self.default: Level = settings.moderation
        self.per_key = parse_key_levels(settings.moderation_keys)
        self.registry = registry
        blocked_counter(registry)  # exported before the first refusal
        self.rewriter = Rewriter(settings, registry) if settings.rewrite_url else None
        self.rewrite_models = {m.strip() for m in settings.rewrite_models.split(",")
                               if m.strip()}

    def level(self, requested: Any, key_name: str | None) -> Level:
        """The request's own `moderation` (already validated for its model), else its key's
        default, else the service's."""
        if requested in ("auto", "low"):
            return cast(Level, requested)
        return cast(Level, self.per_key.get(key_name or "", self.default))

    def _rewrites(self, params: ImageParams) -> bool:
        return self.rewriter is not None and bool(params.prompt.strip()) and (
            "*" in self.rewrite_models or params.model.id in self.rewrite_models)

    async def screen(self, params: ImageParams, body: Any, key_name: str | None) -> ImageParams:
        requested = body.get("moderation") if isinstance(body, dict) else None
        level = self.level(requested, key_name)
        prompt = params.prompt
        found = self.policy.violations(prompt, level) if prompt else []
        if found:
            log.info("prompt refused by moderation (%s, level %s)", ", ".join(found), level,
                     extra={"model": params.model.id})
            raise refuse(found, "prompt", self.registry)
        rendered = prompt
        if self.rewriter is not None and self._rewrites(params):
            revised = await self.rewriter.rewrite(
                prompt, params.rules.max_prompt,
                lambda text: not self.policy.violations(text, level))
            rendered = revised or prompt
        reported = rendered if (params.rules.name in REVISED_FAMILIES or rendered != prompt) \
            else None
        return dataclasses.replace(params, prompt=rendered, moderation=level,
                                   revised_prompt=reported)
