"""docker-compose.yml: valid against the Compose Specification, and the deployment rules hold."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")
jsonschema = pytest.importorskip("jsonschema")

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = Path(__file__).resolve().parents[2].parent / "shared" / "schemas" / "compose-spec.json"
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def interpolate(text: str) -> str:
    """What compose sees with no .env: defaults filled in, required variables set to a stand-in."""
    return VARIABLE.sub(lambda m: "example" if m.group(2) and "?" in m.group(2)
                        else (m.group(3) or ""), text)


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def services() -> dict[str, dict[str, Any]]:
    return dict(compose()["services"])


def documented() -> dict[str, str]:
    """NAME -> value for every `NAME=value` line of .env.example."""
    lines = ENV_EXAMPLE.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", line))


def command_words(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return command.split() if isinstance(command, str) else [str(w) for w in command]


@pytest.mark.parametrize("interpolated", [False, True], ids=["raw", "interpolated"])
def test_compose_file_matches_the_compose_spec(interpolated: bool) -> None:
    if not SCHEMA.exists():
        pytest.skip(f"the Compose Specification schema is not at {SCHEMA}")
    import json

    schema = json.loads(SCHEMA.read_text())
    text = COMPOSE.read_text()
    data = yaml.safe_load(interpolate(text) if interpolated else text)
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in validator.iter_errors(data)]
    assert not errors, "\n".join(errors)


def test_redis_keeps_jobs_aof_on_and_never_evicts() -> None:
    redis = services()["redis"]
    words = command_words(redis)
    assert words[words.index("--appendonly") + 1] == "yes"
    assert words[words.index("--maxmemory-policy") + 1] == "noeviction"
    assert any(str(v).endswith(":/data") for v in redis["volumes"]), "AOF needs a volume"


def test_gpu_worker_reserves_an_nvidia_gpu_and_reads_weights_read_only() -> None:
    gpu = services()["worker-gpu"]
    assert gpu["profiles"] == ["gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any(d.get("driver") == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert any(str(v).endswith(":/models:ro") for v in gpu["volumes"])
    assert gpu["environment"]["HF_HUB_OFFLINE"] == "1"
    assert "worker-cuda" in str(gpu["build"]) and "cuda" in gpu["environment"]["EASEL_DEVICE"]


def test_cpu_profile_runs_the_whole_stack_on_s3() -> None:
    svc = services()
    assert svc["worker-cpu"]["profiles"] == ["cpu"]
    assert "worker-cpu" in str(svc["worker-cpu"]["build"])
    # Everything but the workers has no profile, so `--profile cpu` starts the whole stack.
    assert {name for name, s in svc.items() if "profiles" in s} == {"worker-cpu", "worker-gpu"}
    for name in ("gateway", "worker-cpu", "worker-gpu", "s3-init"):
        env = svc[name]["environment"]
        assert "s3" in env["EASEL_STORAGE"], name
        for key in ("EASEL_REDIS_URL", "EASEL_S3_ENDPOINT_URL", "EASEL_S3_BUCKET",
                    "EASEL_S3_ACCESS_KEY_ID", "EASEL_S3_SECRET_ACCESS_KEY"):
            assert key in env, (name, key)
    assert svc["gateway"]["environment"]["EASEL_HOST"] == "0.0.0.0"
    assert "server" in command_words(svc["s3"]) and "-s3" in command_words(svc["s3"])


def test_every_service_is_health_checked_or_waits_on_a_condition() -> None:
    for name, service in services().items():
        for dep, spec in (service.get("depends_on") or {}).items():
            assert isinstance(spec, dict) and spec.get("condition"), (name, dep)
        if "healthcheck" not in service:  # only one-shot jobs may go without one
            assert service.get("restart") == "no" and service.get("depends_on"), name
    svc = services()
    assert svc["gateway"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert svc["gateway"]["depends_on"]["s3-init"]["condition"] == \
        "service_completed_successfully"


def test_every_variable_compose_uses_is_documented() -> None:
    used = set(VARIABLE.findall(COMPOSE.read_text()))
    missing = sorted({name for name, _, _ in used} - set(documented()))
    assert not missing, f"document these in .env.example: {missing}"


def test_every_easel_setting_is_documented() -> None:
    from core.settings import GatewaySettings, WorkerSettings

    names = {f"EASEL_{field.upper()}" for cls in (GatewaySettings, WorkerSettings)
             for field in cls.model_fields}
    missing = sorted(names - set(documented()))
    assert not missing, f"document these in .env.example: {missing}"


def test_compose_hands_every_setting_to_its_process() -> None:
    """A new setting that compose does not pass on cannot be set in a compose deployment."""
    from core.settings import CommonSettings, GatewaySettings, WorkerSettings

    svc = services()
    wanted: dict[str, type[CommonSettings]] = {
        "gateway": GatewaySettings, "worker-cpu": WorkerSettings, "worker-gpu": WorkerSettings}
    for name, cls in wanted.items():
        names = {f"EASEL_{field.upper()}" for field in cls.model_fields} - {"EASEL_NAME"}
        missing = sorted(names - set(svc[name]["environment"]))
        assert not missing, f"{name} does not receive {missing}"


def test_no_real_secrets_are_committed() -> None:
    env = documented()
    for name in ("EASEL_S3_SECRET_ACCESS_KEY", "GRAFANA_ADMIN_PASSWORD"):
        assert "example" in env[name], f"{name} must be an obvious example value"
        assert name in COMPOSE.read_text() and f"${{{name}:?" in COMPOSE.read_text(), \
            f"compose must require {name} from .env, not default it"
    assert env["EASEL_API_KEYS"] == ""


def test_prometheus_scrapes_the_gateway_and_every_worker_service() -> None:
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["easel-gateway"]["static_configs"][0]["targets"] == ["gateway:8000"]
    sd = jobs["easel-workers"]["dns_sd_configs"][0]
    workers = {name for name in services() if name.startswith("worker")}
    assert set(sd["names"]) == workers
    for name in workers:
        assert str(sd["port"]) == services()[name]["environment"]["EASEL_METRICS_PORT"]


def test_grafana_provisioning_matches_the_mounts() -> None:
    grafana = services()["grafana"]
    mounts = dict(str(v).rsplit(":", 2)[:2] for v in grafana["volumes"] if str(v).startswith("./"))
    provider = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/dashboards/easel.yml").read_text())["providers"][0]
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    assert (ROOT / "deploy/grafana/dashboards/easel.json").exists()
