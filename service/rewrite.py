"""Prompt rewriting (`revised_prompt`), as DALL·E 3 does it: a chat model expands the prompt into
the detailed description the image model renders (docs/moderation.md#prompt-rewriting).

Any OpenAI-compatible chat-completions endpoint the operator names (EASEL_REWRITE_URL, _MODEL,
_API_KEY) is asked with the system prompt in service/policy/rewrite_system_prompt.txt.  Every
failure (no answer within EASEL_REWRITE_TIMEOUT_SECONDS, an HTTP error, an empty or oversized
answer) falls back to the client's own prompt: a rewriter never fails a request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter
from starlette.concurrency import run_in_threadpool

from core.settings import GatewaySettings

log = logging.getLogger("easel.gateway")
SYSTEM_PROMPT = Path(__file__).resolve().parent / "policy" / "rewrite_system_prompt.txt"
OUTCOMES = ("rewritten", "timeout", "error", "unusable", "refused")


def endpoint(url: str) -> str:
    """`http://host/v1` or the full `.../chat/completions` URL -> the full URL."""
    url = url.rstrip("/")
    return url if url.endswith("/chat/completions") else url + "/chat/completions"


class Rewriter:
    def __init__(self, settings: GatewaySettings, registry: CollectorRegistry) -> None:
        self.url = endpoint(settings.rewrite_url)
        self.model = settings.rewrite_model
        key = settings.rewrite_api_key
        self.api_key = key.get_secret_value() if key is not None else ""
        self.timeout = settings.rewrite_timeout_seconds
        path = settings.rewrite_system_prompt_file or SYSTEM_PROMPT
        self.system = path.read_text(encoding="utf-8").strip()
        self.slots = asyncio.Semaphore(settings.rewrite_max_concurrent)
        self.outcomes = Counter("easel_prompt_rewrites_total", "Prompts sent to the rewriter, "
                                "by outcome (anything but rewritten renders the original)",
                                ["outcome"], registry=registry)
        for outcome in OUTCOMES:
            self.outcomes.labels(outcome)

    def _ask(self, prompt: str) -> str:
        body = json.dumps({"model": self.model, "temperature": 0.7,
                           "messages": [{"role": "system", "content": self.system},
                                        {"role": "user", "content": prompt}]}).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, body, headers, method="POST")
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            answer = json.loads(response.read(1_000_000))
        return str(answer["choices"][0]["message"]["content"] or "")

    async def rewrite(self, prompt: str, max_chars: int,
                      allowed: Callable[[str], bool]) -> str | None:
        """The rewritten prompt, or None (render the original), counted by outcome.  A rewrite
        the prompt policy would refuse (`allowed` is False) is dropped: the client's prompt
        passed it, and the chat model's additions are not the client's doing."""
        outcome, text = "error", None
        try:
            async with asyncio.timeout(self.timeout):
                async with self.slots:
                    answer = await run_in_threadpool(self._ask, prompt)
            text = " ".join(answer.split()).strip().strip('"').strip()
            outcome = ("unusable" if not text or len(text) > max_chars else
                       "rewritten" if allowed(text) else "refused")
        except TimeoutError:
            outcome = "timeout"
        except (OSError, ValueError, KeyError, IndexError, TypeError,
                urllib.error.URLError) as exc:
            log.warning("prompt rewriter failed (%s: %s); rendering the original prompt",
                        type(exc).__name__, exc)
        self.outcomes.labels(outcome).inc()
        if outcome != "rewritten":
            if outcome != "error":
                log.warning("prompt rewriter: %s; rendering the original prompt", outcome)
            return None
        return text
