"""core/rules.py: the families' rules are consistent with the request vocabulary and OpenAI's."""

from __future__ import annotations

from typing import get_args

import pytest

from core.rules import (
    EDIT_STRENGTH,
    FAMILIES,
    QUALITY_REPORTED,
    QUALITY_STEPS,
    Quality,
    SizeRule,
    parse_wxh,
)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_family_is_self_consistent(name: str) -> None:
    f = FAMILIES[name]
    assert f.default_size in f.sizes and f.default_quality in f.qualities
    assert f.default_response_format in f.response_formats
    assert all(f.size_error(s) is None for s in f.sizes)
    assert all(parse_wxh(s) for s in f.sizes if s != "auto")
    assert parse_wxh(f.auto_size) is not None
    if f.input_fidelities:
        assert f.default_input_fidelity in f.input_fidelities
    assert f.streaming or not f.response_meta or name == "dall-e-3"
    assert ("edit" in f.operations) == (f.max_images > 0)


def test_openai_matrix() -> None:
    """shared/openai-images-contract.md, section 8."""
    d2, d3, gpt = FAMILIES["dall-e-2"], FAMILIES["dall-e-3"], FAMILIES["gpt-image"]
    assert d2.sizes == ("256x256", "512x512", "1024x1024") and d2.max_prompt == 1000
    assert d3.operations == ("generate",) and d3.max_n == 1 and d3.styles == ("vivid", "natural")
    assert gpt.operations == ("generate", "edit") and gpt.response_formats == ("b64_json",)
    assert gpt.max_images == 16 and gpt.max_prompt == 32000 and not d2.whole_image_edits


def test_gpt_image_2_size_rule() -> None:
    rule = FAMILIES["gpt-image-2"].custom_sizes
    assert rule == SizeRule(multiple=16, max_side=3840, max_ratio=3.0)
    assert rule.error(3840, 2160) is None and rule.error(1280, 3840) is None
    assert "multiples of 16" in (rule.error(1000, 1008) or "")
    assert "aspect" in (rule.error(3840, 1264) or "")
    assert "3840" in (rule.error(3856, 2160) or "")
    assert FAMILIES["gpt-image-2"].size_error("1920x1080") is not None
    assert FAMILIES["gpt-image"].size_error("1920x1088") == "unsupported"  # no custom sizes
    assert "transparent" not in FAMILIES["gpt-image-2"].backgrounds


def test_quality_mappings_cover_the_vocabulary() -> None:
    assert set(QUALITY_STEPS) == set(get_args(Quality))
    assert QUALITY_STEPS["low"] < QUALITY_STEPS["medium"] < QUALITY_STEPS["high"]
    assert set(QUALITY_REPORTED.values()) <= {"low", "medium", "high"}


def test_high_fidelity_redraws_less() -> None:
    for where in ("whole", "masked"):
        assert EDIT_STRENGTH["high"][where] < EDIT_STRENGTH["low"][where]


@pytest.mark.parametrize("text,dims", [("1024x1536", (1024, 1536)), ("auto", None),
                                       ("10x", None), ("x10", None), ("1e3x5", None),
                                       ("123456x1", None), ("١٠x١٠", None)])
def test_parse_wxh(text: str, dims: tuple[int, int] | None) -> None:
    assert parse_wxh(text) == dims
