"""Moderation (docs/moderation.md): a prompt policy before rendering, the worker's output
classifier after it, and OpenAI's refusal: 400 `moderation_blocked` naming the categories.

Levels: `auto` (the default) applies every category; `low` only those whose `levels:` include
it (the default lists keep sexual content involving minors and hate propaganda there); `off`,
which only an operator can choose (globally or per key), applies none.  A request's own
`moderation` (gpt-image and easel ids) wins over its key's default, which wins over
EASEL_MODERATION.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from core.errors import OpenAIError

log = logging.getLogger("easel.gateway")
POLICY_DIR = Path(__file__).resolve().parent / "policy"
LEVELS = ("auto", "low", "off")
_NOT_WORD = re.compile(r"[\W_]+")


def normalize(text: str) -> str:
    """Lower case, accents removed, runs of anything but letters and digits as one space."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " " + _NOT_WORD.sub(" ", plain.casefold()).strip() + " "


@dataclass
class Category:
    name: str
    levels: tuple[str, ...] = ("auto",)
    terms: set[str] = field(default_factory=set)  # normalized, with a space either side
    patterns: list[re.Pattern[str]] = field(default_factory=list)

    def matches(self, text: str) -> bool:
        return any(t in text for t in self.terms) or any(p.search(text) for p in self.patterns)


class ModerationBlocked(OpenAIError):
    """OpenAI's refusal of a request its safety system stopped, plus the categories."""

    def __init__(self, categories: list[str], stage: str) -> None:
        where = "prompt" if stage == "prompt" else "generated image"
        super().__init__(400, f"Your request was rejected by the safety system: the {where} "
                         f"falls under {', '.join(categories)}. If you believe this is a "
                         "mistake, rephrase the request or ask the operator of this service.",
                         "image_generation_user_error", "prompt" if stage == "prompt" else None,
                         "moderation_blocked")
        self.safety_violations = categories

    def envelope(self) -> dict[str, Any]:
        body = super().envelope()
        body["error"]["safety_violations"] = self.safety_violations
        return body


def parse_lists(texts: Iterable[tuple[str, str]]) -> dict[str, Category]:
    """(source name, text) pairs in the README.txt format -> categories by name."""
    categories: dict[str, Category] = {}
    for source, text in texts:
        current: Category | None = None
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
            if not line:
                continue
            key, sep, value = line.partition(":")
            key, value = key.strip().lower(), value.strip()
            where = f"{source}:{number}"
            if not sep or not value:
                raise ValueError(f"{where}: expected 'category|levels|term|pattern: value'")
            if key == "category":
                current = categories.setdefault(value, Category(value))
                continue
            if current is None:
                raise ValueError(f"{where}: {key!r} before any 'category:'")
            if key == "levels":
                levels = tuple(v.strip() for v in value.split(",") if v.strip())
                if not set(levels) <= {"auto", "low"}:
                    raise ValueError(f"{where}: levels are auto and/or low, not {value!r}")
                current.levels = levels
            elif key == "term":
                term = normalize(value)
                if term.strip():
                    current.terms.add(term)
            elif key == "pattern":
                try:
                    current.patterns.append(re.compile(value, re.IGNORECASE))
                except re.error as exc:
                    raise ValueError(f"{where}: bad pattern: {exc}") from exc
            else:
                raise ValueError(f"{where}: unknown directive {key!r}")
    return categories


class PromptPolicy:
    def __init__(self, categories: dict[str, Category]) -> None:
        self.categories = categories

    @classmethod
    def load(cls, extra: str = "") -> PromptPolicy:
        """The shipped lists, then the operator's files (EASEL_MODERATION_LISTS)."""
        files = sorted(POLICY_DIR.glob("*.txt"))
        files = [f for f in files if f.name not in ("README.txt", "rewrite_system_prompt.txt")]
        files += [Path(p.strip()) for p in extra.split(",") if p.strip()]
        return cls(parse_lists((str(f), f.read_text(encoding="utf-8")) for f in files))

    def violations(self, prompt: str, level: str) -> list[str]:
        if level == "off":
            return []
        text = normalize(prompt)
        return sorted(c.name for c in self.categories.values()
                      if level in c.levels and c.matches(text))


def parse_key_levels(spec: str) -> dict[str, str]:
    """EASEL_MODERATION_KEYS `alice=low,bob=off` -> {"alice": "low", "bob": "off"}."""
    levels: dict[str, str] = {}
    for entry in (e.strip() for e in spec.split(",") if e.strip()):
        name, sep, level = entry.partition("=")
        if not sep or level.strip() not in LEVELS or not name.strip():
            raise ValueError(f"EASEL_MODERATION_KEYS entry {entry!r} is not name=auto|low|off")
        levels[name.strip()] = level.strip()
    return levels


_counters: dict[int, tuple[CollectorRegistry, Counter]] = {}  # the registry kept: ids stay unique


def blocked_counter(registry: CollectorRegistry) -> Counter:
    """easel_moderation_blocked_total on the gateway's registry (registered once)."""
    if id(registry) not in _counters:
        counter = Counter("easel_moderation_blocked_total", "Requests refused by moderation, "
                          "by stage (prompt: the policy lists; output: the worker's "
                          "classifier) and category", ["stage", "category"], registry=registry)
        _counters[id(registry)] = (registry, counter)
    return _counters[id(registry)][1]


def refuse(categories: list[str], stage: str, registry: CollectorRegistry) -> ModerationBlocked:
    counter = blocked_counter(registry)
    for category in categories:
        counter.labels(stage, category).inc()
    return ModerationBlocked(categories, stage)
