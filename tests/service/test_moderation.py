"""The prompt policy's lists, levels and refusals, without a server (the e2e tests are in
tests/e2e/test_moderation.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from service.moderation import (
    ModerationBlocked,
    PromptPolicy,
    normalize,
    parse_key_levels,
    parse_lists,
    refuse,
)


@pytest.fixture(scope="module")
def policy() -> PromptPolicy:
    return PromptPolicy.load()


@pytest.mark.parametrize(("prompt", "auto", "low"), [
    ("three green triangles above a red circle", [], []),
    ("a photo of Taylor Swift", ["public_figure"], []),
    ("TAYLOR-SWIFT, on stage", ["public_figure"], []),
    ("beyonce singing", ["public_figure"], []),
    ("a landscape in the style of Greg Rutkowski", ["living_artist"], []),
    ("a nude figure study", ["sexual"], []),
    ("a gory battlefield", ["violence/graphic"], []),
    ("a poster saying heil hitler", ["hate"], ["hate"]),
    ("a naked 12 year old", ["sexual", "sexual/minors"], ["sexual/minors"]),
    ("lolicon art", ["sexual/minors"], ["sexual/minors"]),
    ("taylor swifts river", [], []),  # whole words only
    ("swift taylor", [], []),
])
def test_default_lists_and_what_low_relaxes(policy: PromptPolicy, prompt: str,
                                            auto: list[str], low: list[str]) -> None:
    assert policy.violations(prompt, "auto") == auto
    assert policy.violations(prompt, "low") == low
    assert policy.violations(prompt, "off") == []


def test_normalisation_ignores_case_accents_and_punctuation() -> None:
    assert normalize("Beyoncé!!  Knowles") == " beyonce knowles "
    assert normalize("Ｔａｙｌｏｒ_Swift") == " taylor swift "  # full-width and underscores


def test_operators_extend_terms_and_change_levels(tmp_path: Path) -> None:
    extra = tmp_path / "extra.txt"
    extra.write_text("# ours\ncategory: public_figure\nlevels: auto, low\n"
                     "term: Jane Operator\n\ncategory: brands\npattern: \\bacme\\w*\\b\n")
    policy = PromptPolicy.load(f" {extra} ,")
    assert policy.violations("jane operator waving", "low") == ["public_figure"]
    assert policy.violations("Taylor Swift", "low") == ["public_figure"]  # now at low too
    assert policy.violations("an ACMEcorp logo", "auto") == ["brands"]
    assert policy.violations("an ACMEcorp logo", "low") == []  # new categories: auto only


@pytest.mark.parametrize("text", ["term: x", "category: c\nlevels: high", "category: c\nbogus: 1",
                                  "category: c\npattern: (", "category: c\nterm:"])
def test_malformed_lists_are_refused_at_start(text: str) -> None:
    with pytest.raises(ValueError, match=r"x\.txt:"):
        parse_lists([("x.txt", text)])


def test_per_key_levels() -> None:
    assert parse_key_levels(" alice=low, bob=off ,") == {"alice": "low", "bob": "off"}
    for bad in ("alice", "alice=strict", "=low"):
        with pytest.raises(ValueError):
            parse_key_levels(bad)


def test_a_refusal_has_openais_shape_and_is_counted() -> None:
    registry = CollectorRegistry()
    error = refuse(["public_figure", "sexual"], "prompt", registry)
    assert isinstance(error, ModerationBlocked) and error.status == 400
    body = error.envelope()["error"]
    assert body["code"] == "moderation_blocked" and body["type"] == "image_generation_user_error"
    assert body["safety_violations"] == ["public_figure", "sexual"]
    assert {"message", "type", "param", "code"} <= set(body)
    refuse(["sexual"], "output", registry)
    count = registry.get_sample_value
    assert count("easel_moderation_blocked_total",
                 {"stage": "prompt", "category": "sexual"}) == 1
    assert count("easel_moderation_blocked_total",
                 {"stage": "output", "category": "sexual"}) == 1
