"""workers/residency.py with fake pipelines (no torch): load, unload, idle sleep, wake, and what
the heartbeat reports of them."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from core.catalog import Catalog, PipelineSpec, load_catalog
from workers.residency import Residency


@dataclass
class FakePipeline:
    spec: PipelineSpec
    load_seconds: float = 0.1
    adapters: Any = None
    lock: Any = field(default_factory=threading.RLock)

    def weight_bytes(self) -> int:
        return 1000


def _residency(loaded: bool = True) -> tuple[Residency, list[str]]:
    catalog: Catalog = load_catalog(None)
    loads: list[str] = []

    def load(spec: PipelineSpec, _catalog: Catalog) -> FakePipeline:
        loads.append(spec.name)
        return FakePipeline(spec)

    pipelines = {"shapes": FakePipeline(catalog.pipelines["shapes"])} if loaded else {}
    return Residency(catalog, load, pipelines, {}, backoff=0), loads


def test_unload_stops_serving_and_load_brings_it_back() -> None:
    residency, loads = _residency()
    changes: list[list[str]] = []
    residency.on_change = lambda: changes.append(residency.served())
    residency.unload("shapes")
    assert residency.served() == [] and residency.describe() == {"shapes": {"state": "unloaded"}}
    assert residency.wake("shapes") is None  # an unloaded pipeline is not woken by a job
    state = residency.load("shapes")
    assert state["state"] == "resident" and state["bytes"] == 1000 and loads == ["shapes"]
    assert changes == [[], ["shapes"]]
    with pytest.raises(KeyError, match="unknown pipeline 'nope'"):
        residency.load("nope")
    with pytest.raises(KeyError, match="does not hold pipeline 'nope'"):
        residency.unload("nope")


def test_idle_pipelines_sleep_keep_their_queue_and_wake_for_a_job() -> None:
    residency, loads = _residency()
    assert residency.sleep_idle(0) == []  # 0: never
    residency.last_used["shapes"] = time.monotonic() - 5
    assert residency.sleep_idle(1) == ["shapes"]
    assert residency.served() == ["shapes"]  # still takes its jobs
    assert residency.describe()["shapes"] == {"state": "asleep"}
    assert residency.wake("shapes") is not None and loads == ["shapes"]
    assert residency.describe()["shapes"]["state"] == "resident"


def test_a_pipeline_mid_call_is_not_idle() -> None:
    residency, _ = _residency()
    residency.last_used["shapes"] = time.monotonic() - 5
    with residency.pipelines["shapes"].lock:
        ready = threading.Event()
        result: list[list[str]] = []
        thread = threading.Thread(target=lambda: (result.append(residency.sleep_idle(1)),
                                                  ready.set()))
        thread.start()
        assert ready.wait(5)
    assert result == [[]]


def test_a_failed_load_is_reported_and_raised() -> None:
    catalog = load_catalog(None)

    def broken(spec: PipelineSpec, _catalog: Catalog) -> Any:
        raise FileNotFoundError("no weights in /srv/x")

    residency = Residency(catalog, broken, {}, {}, backoff=0)
    with pytest.raises(RuntimeError, match="pipeline shapes failed to load: no weights"):
        residency.load("shapes")
    assert residency.describe()["shapes"]["state"] == "failed"


def test_adapters_that_failed_to_load_are_reported_and_forgotten_when_their_entry_changes(
        ) -> None:
    """The heartbeat carries them per resident pipeline (readiness, the gateway's refusal); a
    catalog reload that changes the entry lets the next request try the file again."""
    from core.adapters import AdapterSpec
    from models.adapters import AdapterCache

    residency, _ = _residency()
    good, bad = (AdapterSpec(n, f"/srv/{n}.safetensors", ("shapes",)) for n in ("ok", "bad"))

    class Pipe:
        def load_lora_weights(self, path: str, adapter_name: str) -> None:
            if adapter_name == "bad":
                raise OSError(f"Unable to load weights from checkpoint file {path}")

    cache = AdapterCache(Pipe(), [good, bad], 0, lambda p: p, "shapes")
    cache.preload()
    residency.pipelines["shapes"].adapters = cache
    state = residency.describe()["shapes"]
    assert state["adapters"] == ["ok"]
    assert state["failed_adapters"] == {"bad": "adapter bad for pipeline shapes failed to load: "
                                               "Unable to load weights from checkpoint file "
                                               "bad.safetensors"}
    residency.reload_catalog(residency.catalog)  # the built-in catalog has no adapter "bad"
    assert residency.describe()["shapes"]["failed_adapters"] == {}
