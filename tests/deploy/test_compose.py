"""docker-compose.yml: valid against the Compose Specification, and the deployment rules hold."""

from __future__ import annotations

import json
import os
import re
import subprocess
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
            assert service.get("restart") == "no", name
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


SECRETS = ("EASEL_S3_SECRET_ACCESS_KEY", "REDIS_PASSWORD", "GRAFANA_ADMIN_PASSWORD")


def test_no_secrets_are_committed_and_compose_requires_each() -> None:
    """An unedited copy of .env.example must not start: an example secret that satisfies
    `${NAME:?}` is a working default credential on every deployment."""
    env = documented()
    text = COMPOSE.read_text()
    for name in SECRETS:
        assert env[name] == "", f"{name} must be empty in .env.example"
        assert f"${{{name}:?" in text, f"compose must require {name} from .env, not default it"
        assert not re.search(rf"\$\{{{name}:?-", text), f"compose must not default {name}"
    assert env["EASEL_API_KEYS"] == ""


def _preflight(**env: str) -> subprocess.CompletedProcess[str]:
    good = {"EASEL_S3_SECRET_ACCESS_KEY": "k" * 40, "REDIS_PASSWORD": "0123abcd" * 4,
            "GRAFANA_ADMIN_PASSWORD": "g" * 16, "PATH": os.environ["PATH"]}
    return subprocess.run(["sh", str(ROOT / "deploy/preflight.sh")], env={**good, **env},
                          capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize(("name", "value"), [
    ("EASEL_S3_SECRET_ACCESS_KEY", "example-change-me-s3-secret"),  # the old .env.example's
    ("GRAFANA_ADMIN_PASSWORD", "example-change-me"),
    ("REDIS_PASSWORD", "CHANGEME-0123456789"),
    ("REDIS_PASSWORD", "short"),
    ("REDIS_PASSWORD", ""),
    ("REDIS_PASSWORD", "0123456789abcdef@evil:1/0"),  # would break the redis:// URL
    ("EASEL_S3_SECRET_ACCESS_KEY", 'abcdefghijklmnop", "x'),  # would break SeaweedFS's JSON
])
def test_preflight_refuses_example_short_and_malformed_secrets(name: str, value: str) -> None:
    assert _preflight().returncode == 0
    refused = _preflight(**{name: value})
    assert refused.returncode == 1 and name in refused.stderr


def test_services_with_secrets_wait_for_the_preflight() -> None:
    svc = services()
    assert svc["preflight"]["restart"] == "no"
    assert "./deploy/preflight.sh:/preflight.sh:ro" in svc["preflight"]["volumes"]
    assert set(SECRETS) <= set(svc["preflight"]["environment"])
    for name in ("redis", "s3", "grafana"):
        assert svc[name]["depends_on"]["preflight"] == \
            {"condition": "service_completed_successfully"}, name


def test_published_ports_listen_on_loopback_unless_the_operator_opts_in() -> None:
    """`"8333:8333"` publishes on 0.0.0.0: every interface of the host."""
    for name, service in services().items():
        for port in service.get("ports", []):
            assert str(port).startswith(("${EASEL_BIND:-127.0.0.1}:", "127.0.0.1:")), (name, port)
    assert documented()["EASEL_BIND"] == "127.0.0.1"


def test_loadable_by_docker_compose_1_29() -> None:
    """Debian's docker-compose 1.29 (scripts/container-smoke.sh) refuses a top-level `name` and
    inline config `content`, and ignores file-based configs outside a swarm: .env.example names
    the project, and files the services read are bind-mounted read-only."""
    data = compose()
    assert "name" not in data and "configs" not in data
    assert documented()["COMPOSE_PROJECT_NAME"] == "easel"
    for name, service in data["services"].items():
        assert "configs" not in service, name
        for volume in service.get("volumes", []):
            if str(volume).startswith("./"):
                source = str(volume).split(":")[0]
                assert (ROOT / source).exists() and str(volume).endswith(":ro"), (name, volume)


def test_debian_docker_compose_1_29_loads_it(tmp_path: Path) -> None:
    """`docker-compose config` as Debian ships it (apt-get install docker-compose), both profiles,
    from an .env.example with its secrets filled in."""
    import shutil

    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose (Debian's 1.29) is not installed")
    env_file = tmp_path / ".env"
    secrets = {name: "0123abcd" * 4 for name in SECRETS}
    env_file.write_text("".join(f"{name}={secrets.get(name, value)}\n"
                                for name, value in documented().items()))
    out = subprocess.run([binary, "-f", str(COMPOSE), "--env-file", str(env_file), "--profile",
                          "cpu", "--profile", "gpu", "config", "-q"],
                         capture_output=True, text=True, timeout=60,
                         env={"PATH": os.environ["PATH"]})
    assert out.returncode == 0 and not out.stderr.strip(), out.stderr


def test_redis_requires_its_password_everywhere() -> None:
    data = compose()
    redis = data["services"]["redis"]
    assert "./deploy/redis-start.sh:/redis-start.sh:ro" in redis["volumes"]
    assert redis["entrypoint"] == ["sh", "/redis-start.sh"]
    assert "requirepass" not in command_words(redis)  # the password is not in argv
    assert redis["environment"]["REDISCLI_AUTH"].startswith("${REDIS_PASSWORD:?")
    url = data["x-easel-env"]["EASEL_REDIS_URL"]
    assert url.startswith("redis://:${REDIS_PASSWORD:?")
    assert url.endswith("@${REDIS_HOST:-redis}:6379/0")
    for name in ("gateway", "worker-cpu", "worker-gpu", "s3-init"):
        assert data["services"][name]["environment"]["EASEL_REDIS_URL"] == url, name


def test_compose_redis_command_refuses_clients_without_the_password(tmp_path: Path) -> None:
    """The bundled Redis's start script and command line, run by the local redis-server; the
    image's docker-entrypoint.sh (which drops to the redis user) is a pass-through here."""
    import shutil

    import psutil
    from redis import Redis
    from redis.exceptions import AuthenticationError, ResponseError

    from tests.support import free_port, stop, wait_port

    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    shim = tmp_path / "bin" / "docker-entrypoint.sh"
    shim.parent.mkdir()
    shim.write_text('#!/bin/sh\nexec "$@"\n')
    shim.chmod(0o755)
    password = "0123abcd" * 4
    data = yaml.safe_load(interpolate(COMPOSE.read_text()))
    redis = data["services"]["redis"]
    env = {"REDISCLI_AUTH": password, "PATH": f"{shim.parent}{os.pathsep}{os.environ['PATH']}"}
    port = free_port()
    proc = subprocess.Popen(["sh", str(ROOT / "deploy/redis-start.sh"), *command_words(redis),
                             "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path)],
                            env=env, stdout=subprocess.DEVNULL)
    try:
        wait_port(port, proc=proc)
        argv = psutil.Process(proc.pid).cmdline()  # exec all the way: the same process
        assert "redis-server" in argv[0] and not any(password in word for word in argv), argv
        with pytest.raises((AuthenticationError, ResponseError)):
            Redis(port=port).ping()
        assert Redis(port=port, password=password).ping()
    finally:
        stop(proc)


def seaweedfs_identity(**env: str) -> dict[str, Any]:
    """The identity file deploy/s3-start.sh writes for SeaweedFS, from the `s3` service's
    environment as compose fills it in (the secret: a stand-in) plus `env`."""
    data = yaml.safe_load(interpolate(COMPOSE.read_text()))
    env = {**data["services"]["s3"]["environment"], "PATH": os.environ["PATH"], **env}
    out = subprocess.run(["sh", str(ROOT / "deploy/s3-start.sh"), "identity"], env=env,
                         capture_output=True, text=True, timeout=30, check=True)
    return dict(json.loads(out.stdout))


def test_seaweedfs_identity_is_least_privilege() -> None:
    """Easel's S3 key may read, write, list and tag its own bucket's objects, nothing more."""
    data = compose()
    s3 = data["services"]["s3"]
    assert "./deploy/s3-start.sh:/s3-start.sh:ro" in s3["volumes"]
    assert s3["entrypoint"] == ["sh", "/s3-start.sh"]
    for key in ("EASEL_S3_ACCESS_KEY_ID", "EASEL_S3_SECRET_ACCESS_KEY", "EASEL_S3_BUCKET"):
        assert s3["environment"][key] == data["x-easel-env"][key], key  # the key Easel signs with
    identities = seaweedfs_identity(EASEL_S3_SECRET_ACCESS_KEY="s" * 32)["identities"]
    assert len(identities) == 1
    assert identities[0]["credentials"] == [{"accessKey": "easel", "secretKey": "s" * 32}]
    assert sorted(identities[0]["actions"]) == ["List:easel", "Read:easel", "Tagging:easel",
                                               "Write:easel"]
    code = [line for line in (ROOT / "deploy/s3-start.sh").read_text().splitlines()
            if not line.lstrip().startswith("#")]
    assert "Admin" not in "\n".join(code)
    svc = services()
    assert svc["s3-init"]["depends_on"]["s3-bucket"]["condition"] == \
        "service_completed_successfully"
    assert "./deploy/s3-bucket.sh:/s3-bucket.sh:ro" in svc["s3-bucket"]["volumes"]
    assert svc["s3-bucket"]["image"] == svc["s3"]["image"]  # the same weed shell as the server


def test_worker_metrics_listen_inside_the_compose_network_only() -> None:
    svc = services()
    for name in ("worker-cpu", "worker-gpu"):
        assert svc[name]["environment"]["EASEL_METRICS_HOST"] == "0.0.0.0", name
        assert "ports" not in svc[name], name


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


def test_the_webhooks_service_gets_its_settings_and_no_storage_secret() -> None:
    """`easel webhooks` signs deliveries: it gets the secret; the gateway never does, and the
    deliverer gets no S3 credentials (it needs no storage)."""
    from core.settings import GatewaySettings, WebhookSettings

    svc = services()
    env = svc["webhooks"]["environment"]
    webhook = {f"EASEL_{f.upper()}" for f in WebhookSettings.model_fields if "webhook" in f}
    assert webhook <= set(env)
    assert env["EASEL_REDIS_URL"] == compose()["x-easel-env"]["EASEL_REDIS_URL"]
    assert "EASEL_S3_SECRET_ACCESS_KEY" not in env
    assert "EASEL_WEBHOOK_SECRET" not in svc["gateway"]["environment"]
    assert "webhook_secret" not in GatewaySettings.model_fields
    assert documented()["EASEL_WEBHOOK_SECRET"] == ""
    assert svc["webhooks"]["healthcheck"]["test"][-3:] == ["easel", "webhooks", "--check"]
