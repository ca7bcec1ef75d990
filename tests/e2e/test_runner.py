"""`pipeline up`/`status`/`down` on a whole stack of its own (own ports and state dir): the two-command promise."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from tests.support.processes import wait_for
from tests.support.stack import pipeline, stack_env

pytestmark = pytest.mark.e2e


def components(env: dict[str, str]) -> tuple[int, dict[str, dict[str, Any]]]:
    result = pipeline(env, "status", "--json", timeout=60)
    return result.returncode, {c["name"]: c for c in json.loads(result.stdout)["components"]}


def test_up_status_restart_down_up_keeps_data(tmp_path: Path) -> None:
    # The keyword model: what this test checks is the supervisor and the state, not the model.
    env = stack_env(tmp_path / "state", INFERENCE_MODEL="keywords")
    (tmp_path / "state").mkdir()
    # A stale pid file (naming a live process that is not our supervisord) must not block a start.
    (tmp_path / "state" / "supervisord.pid").write_text(str(os.getpid()))
    intake_port = int(env["INTAKE_PORT"])
    try:
        with socket.socket() as squatter:
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            squatter.bind(("127.0.0.1", intake_port))
            squatter.listen()
            refused = pipeline(env, "up", timeout=120)
        assert refused.returncode == 1
        assert f"port {intake_port} (intake)" in refused.stderr

        first = pipeline(env, "up")
        assert first.returncode == 0, first.stdout + first.stderr
        assert f"dev API key: {os.environ.get('PIPELINE_DEV_API_KEY', 'dev-key-change-me')}" in first.stdout
        code, parts = components(env)
        assert code == 0 and all(p["up"] for p in parts.values()), parts

        demo = pipeline(env, "demo", timeout=120)
        assert demo.returncode == 0, demo.stderr
        written = json.loads(demo.stdout)

        again = pipeline(env, "up")
        assert again.returncode == 0 and "started: nothing" in again.stdout

        # A crashed service comes back (the supervisor restarts it).
        old_pid = parts["intake"]["pid"]
        os.kill(old_pid, signal.SIGKILL)
        wait_for(
            lambda: (c := components(env)[1]["intake"])["up"] and c["pid"] != old_pid,
            "the supervisor to restart intake",
            timeout=90,
            interval=0.5,
        )

        # A stopped one is started by `pipeline up`, and only that one.
        subprocess.run(
            [
                str(Path(sys.executable).parent / "supervisorctl"),
                "-c",
                str(tmp_path / "state" / "supervisord.conf"),
                "stop",
                "notifier",
            ],
            check=True,
            capture_output=True,
        )
        code, parts = components(env)
        assert code == 1 and not parts["notifier"]["up"]
        restarted = pipeline(env, "up")
        assert restarted.returncode == 0 and "started: notifier\n" in restarted.stdout, restarted.stdout

        pids = [p["pid"] for p in components(env)[1].values()]
        down = pipeline(env, "down")
        assert down.returncode == 0, down.stderr
        assert not any(Path(f"/proc/{pid}").exists() for pid in pids)
        assert components(env)[0] == 1

        back = pipeline(env, "up")
        assert back.returncode == 0, back.stdout + back.stderr
        consumer = Consumer({"bootstrap.servers": env["PIPELINE_KAFKA_BOOTSTRAP_SERVERS"], "group.id": "e2e-check"})
        consumer.assign([TopicPartition(written["topic"], written["partition"], written["offset"])])
        msg = None
        while msg is None:
            msg = consumer.poll(10)
        consumer.close()
        value = msg.value()
        assert value is not None
        assert int.from_bytes(value[1:5], "big") == written["schema_id"]
        record = AvroDeserializer(SchemaRegistryClient({"url": env["PIPELINE_SCHEMA_REGISTRY_URL"]}))(
            value, SerializationContext(written["topic"], MessageField.VALUE)
        )
        assert record["event_id"] == written["event_id"]
    finally:
        pipeline(env, "down")
