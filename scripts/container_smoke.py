"""The client half of scripts/container-smoke.sh: against the compose stack it started, one image
through the official openai SDK, then a worker container killed mid-job whose restart must
finish that job. Prints PASS/FAIL lines with timings; exits non-zero on the first failure."""

from __future__ import annotations

import argparse
import base64
import io
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Any

import openai
from PIL import Image

# Runs inside the gateway container (its image has Easel's core and the Redis URL): returns
# once a worker reports a job in hand, polling every 50 ms.
BUSY_PROBE = """
import time
from redis import Redis
from core import liveness
from core.settings import CommonSettings
redis = Redis.from_url(CommonSettings().redis_url)
deadline = time.time() + 120
while time.time() < deadline:
    if any(info.get("busy") for info in liveness.live_workers(redis).values()):
        raise SystemExit(0)
    time.sleep(0.05)
raise SystemExit("no worker became busy")
"""
# Long enough on 2 CPU cores that the kill lands mid-render, short enough to re-run quickly.
KILLABLE = {"steps": 40, "seed": 1}


def say(started: float, line: str) -> None:
    print(f"[smoke +{time.time() - started:5.1f}s] {line}", flush=True)


def inspect(container: str, template: str) -> str:
    return subprocess.run(["docker", "inspect", "-f", template, container], check=True,
                          capture_output=True, text=True).stdout.strip()


def wait_ready(base_url: str, timeout: float) -> None:
    """The gateway's /readyz turns 200 once a worker has its pipelines loaded."""
    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{base_url}/readyz", timeout=5) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        if time.time() > deadline:
            raise SystemExit(f"FAIL gateway not ready within {timeout:.0f} s")
        time.sleep(0.5)


def check_png(item: Any, size: int) -> None:
    image = Image.open(io.BytesIO(base64.b64decode(item.b64_json)))
    if image.format != "PNG" or image.size != (size, size):
        raise SystemExit(f"FAIL expected a {size}x{size} PNG, got {image.format} {image.size}")


def generate(client: openai.OpenAI, n: int, extra: dict[str, Any] | None = None) -> Any:
    return client.images.generate(prompt="a red circle to the left of a blue square",
                                  size="256x256", n=n, response_format="b64_json",
                                  extra_body=extra or {})


def kill_mid_job(args: argparse.Namespace, client: openai.OpenAI, started: float) -> None:
    """SIGKILL to the worker container's main process, as the OOM killer or a crash would
    deliver it. (`docker kill` counts as a manual stop: the restart policy leaves it down.)"""
    box: dict[str, Any] = {}

    def request() -> None:
        try:
            box["result"] = generate(client, 2, KILLABLE)
        except Exception as exc:  # reported below, with the main thread's context
            box["error"] = exc

    restarts = int(inspect(args.worker, "{{.RestartCount}}"))
    thread = threading.Thread(target=request, daemon=True)
    thread.start()
    subprocess.run(["docker", "exec", args.gateway, "python", "-c", BUSY_PROBE], check=True)
    pid = inspect(args.worker, "{{.State.Pid}}")
    subprocess.run(["kill", "-KILL", pid], check=True)
    killed = time.time()
    say(started, f"killed worker container {args.worker[:12]} (pid {pid}) mid-job")
    thread.join(args.timeout)
    if "error" in box or "result" not in box:
        raise SystemExit(f"FAIL the job did not finish after the kill: {box.get('error')!r}")
    for item in box["result"].data:
        check_png(item, 256)
    after = int(inspect(args.worker, "{{.RestartCount}}"))
    if after <= restarts or inspect(args.worker, "{{.State.Running}}") != "true":
        raise SystemExit(f"FAIL the worker container was not restarted ({restarts} -> {after})")
    say(started, f"PASS killed worker restarted by its policy (restarts {restarts} -> {after}); "
                 f"{len(box['result'].data)} images {time.time() - killed:.1f} s after the kill")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--gateway", required=True, help="the gateway container's id")
    parser.add_argument("--worker", required=True, help="the worker container's id")
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    started = time.time()
    wait_ready(args.base_url, args.timeout)
    say(started, "PASS gateway ready with a worker")
    client = openai.OpenAI(base_url=f"{args.base_url}/v1", api_key=args.api_key,
                           max_retries=0, timeout=args.timeout)
    t0 = time.time()
    first = generate(client, 1)
    check_png(first.data[0], 256)
    say(started, f"PASS openai SDK images.generate: a 256x256 PNG in {time.time() - t0:.2f} s")
    try:
        openai.OpenAI(base_url=f"{args.base_url}/v1", api_key="sk-wrong",
                      max_retries=0).images.generate(prompt="x")
        raise SystemExit("FAIL a wrong API key was accepted")
    except openai.AuthenticationError:
        say(started, "PASS a wrong API key gets 401")
    kill_mid_job(args, client, started)


if __name__ == "__main__":
    try:
        main()
    except subprocess.CalledProcessError as exc:
        sys.exit(f"FAIL {exc.cmd[:3]} exited {exc.returncode}")
