"""core/control.py: a command reaches one worker's list, and its reply comes back (real Redis)."""

from __future__ import annotations

import threading

from redis import Redis

from core import control


def test_a_command_and_its_reply(redis: Redis) -> None:
    command = control.Command(op="unload", pipeline="shapes")

    def worker() -> None:
        _, raw = redis.blpop([control.control_key("w1")], timeout=5)  # type: ignore[misc]
        got = control.Command.model_validate_json(raw)
        control.answer(redis, got, control.Reply(ok=True, pipelines={"shapes": {"state": "x"}}))

    thread = threading.Thread(target=worker)
    thread.start()
    reply = control.send(redis, "w1", command, timeout=5)
    thread.join()
    assert reply is not None and reply.ok and reply.pipelines == {"shapes": {"state": "x"}}
    assert not redis.exists(control.reply_key(command.id))  # taken by the one waiting


def test_no_reply_in_time_is_none(redis: Redis) -> None:
    assert control.send(redis, "gone", control.Command(op="reload"), timeout=1) is None
    assert redis.ttl(control.control_key("gone")) > 0  # a dead worker's list expires
