"""service/admin.py: which worker an admin command goes to when the body names none."""

from __future__ import annotations

from typing import Any

from service.admin import choose


def _worker(**states: str) -> dict[str, Any]:
    return {"pipelines": {name: {"state": state} for name, state in states.items()}}


def test_a_load_goes_to_the_worker_that_failed_or_unloaded_it_before_an_emptier_one() -> None:
    workers = {"a": _worker(shapes="resident", sd15="failed"), "b": _worker()}
    assert choose(workers, "load", "sd15") == ["a"]  # configured for it: its disk was fixed
    workers["a"]["pipelines"]["sd15"] = {"state": "unloaded"}
    assert choose(workers, "load", "sd15") == ["a"]
    assert choose(workers, "load", "other") == ["b"]  # else the one holding the fewest
    workers["b"] = _worker(sd15="resident")
    assert choose(workers, "load", "sd15") == ["b"]  # already resident there: a no-op


def test_an_unload_goes_to_every_worker_holding_it() -> None:
    workers = {"a": _worker(sd15="resident"), "b": _worker(sd15="asleep"),
               "c": _worker(sd15="failed")}
    assert choose(workers, "unload", "sd15") == ["a", "b"]
