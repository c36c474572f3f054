"""Alert rules (deploy/prometheus/alerts.yml): valid, unit-tested with promtool, wired into
Prometheus and compose, watching only metrics Easel exports, and documented."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.test_observability import all_exported_names, metric_names

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy/prometheus"
RULES = PROMETHEUS / "alerts.yml"
RULE_TESTS = PROMETHEUS / "alerts.test.yml"
# Named by the issue: each of these failures has an alert.
REQUIRED = {"EaselNoWorkerForModel", "EaselWorkersBelowExpected", "EaselWorkerCrashLooping",
            "EaselQueueWaitHigh", "EaselQueueNearlyFull", "EaselErrorRatioHigh",
            "EaselStorageFailing", "EaselRedisDown"}


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def promtool(*args: str) -> str:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.skip("promtool is not installed (Debian: scripts/apt-install.sh prometheus; "
                    "`make test` installs it)")
    done = subprocess.run([binary, *args], cwd=PROMETHEUS, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_promtool_accepts_the_rules_and_the_prometheus_config() -> None:
    assert f"{len(rules())} rules found" in promtool("check", "rules", RULES.name)
    promtool("check", "config", "prometheus.yml")


def test_every_alert_passes_its_promtool_unit_tests() -> None:
    assert "SUCCESS" in promtool("test", "rules", RULE_TESTS.name)


def test_every_alert_has_a_unit_test_that_makes_it_fire() -> None:
    fired = {case["alertname"] for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
             for case in test.get("alert_rule_test", []) if case.get("exp_alerts")}
    names = {rule["alert"] for rule in rules()}
    assert names >= REQUIRED
    assert names == fired, f"no firing unit test for {sorted(names - fired)}"


def test_alerts_watch_only_metrics_easel_exports_and_say_what_to_do() -> None:
    exported = all_exported_names()
    docs = (ROOT / "docs/deploy.md").read_text()
    for rule in rules():
        unknown = metric_names(rule["expr"]) - exported
        assert not unknown, f"{rule['alert']}: {sorted(unknown)} are not exported by Easel"
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["runbook"]
        assert f"`{rule['alert']}`" in docs, f"docs/deploy.md does not explain {rule['alert']}"


def test_prometheus_loads_the_rules_and_sends_alerts_to_compose_alertmanager() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert config["rule_files"] == [RULES.name]
    targets = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    mounts = services["prometheus"]["volumes"]
    assert f"./deploy/prometheus/{RULES.name}:/etc/prometheus/{RULES.name}:ro" in \
        [m.split("  #")[0] for m in mounts]  # beside prometheus.yml, as rule_files expects
    host, port = targets[0].split(":")
    assert host in services and any(p.endswith(f":{port}") for p in services[host]["ports"])
    alertmanager = yaml.safe_load((ROOT / "deploy/alertmanager/alertmanager.yml").read_text())
    receivers = {r["name"] for r in alertmanager["receivers"]}
    assert alertmanager["route"]["receiver"] in receivers
    names = {rule["alert"] for rule in rules()}
    for inhibit in alertmanager["inhibit_rules"]:
        for matcher in inhibit["source_matchers"] + inhibit["target_matchers"]:
            alerts = matcher.split("=", 1)[1].strip('~"').split("|")
            assert set(alerts) <= names, matcher
