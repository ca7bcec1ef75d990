"""Fetch and run the real infrastructure: Apache Kafka from Maven Central jars, Redis from Debian."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from pathlib import Path

from shared.settings import REPO_ROOT

log = logging.getLogger(__name__)

KAFKA_POM = REPO_ROOT / "infra" / "kafka" / "pom.xml"
LOG4J_CONFIG = REPO_ROOT / "infra" / "kafka" / "log4j2.yaml"
SERVER_PROPERTIES = REPO_ROOT / "infra" / "kafka" / "server.properties"


def kafka_version() -> str:
    """The broker version, kept in one place: the POM's ``kafka.version`` property."""
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", KAFKA_POM.read_text())
    if match is None:
        raise RuntimeError(f"{KAFKA_POM} has no <kafka.version>")
    return match.group(1).strip()


def kafka_libs(cache_dir: Path) -> Path:
    return cache_dir.expanduser() / kafka_version() / "libs"


def fetch_kafka(cache_dir: Path) -> Path:
    """Resolve the broker jars from Maven Central into the cache (once) and return the libs folder."""
    libs = kafka_libs(cache_dir)
    marker = libs / ".complete"
    if marker.exists():
        return libs
    if shutil.which("mvn") is None:
        raise RuntimeError(
            "Maven (mvn) is needed to fetch Kafka from Maven Central; install it (apt-get install maven)"
        )
    libs.mkdir(parents=True, exist_ok=True)
    log.info("fetching kafka", extra={"version": kafka_version(), "into": str(libs)})
    subprocess.run(
        [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(KAFKA_POM),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={libs}",
            "-DincludeScope=runtime",
        ],
        check=True,
    )
    marker.write_text(kafka_version() + "\n")
    return libs


def ensure_redis_server() -> str:
    """Return the path of ``redis-server``, installing Debian's package when it is missing."""
    found = shutil.which("redis-server")
    if found:
        return found
    log.info("installing redis-server from Debian's packages")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "redis-server"], check=True, env=env)
    found = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(found).exists():
        raise RuntimeError("redis-server is still missing after apt-get install redis-server")
    return found


def server_properties(data_dir: Path, port: int, controller_port: int) -> str:
    """A single-node KRaft broker+controller: the shared settings (infra/kafka/server.properties, which the
    container image uses too) and this machine's node id, listeners and data directory."""
    return SERVER_PROPERTIES.read_text() + "\n".join(
        [
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
            f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"log.dirs={data_dir / 'logs'}",
            "",
        ]
    )


def kafka_command(libs: Path, config: Path, heap: str) -> list[str]:
    java = shutil.which("java") or "java"
    return [
        java,
        f"-Xmx{heap}",
        f"-Xms{heap}",
        "-XX:+UseG1GC",
        "-XX:TieredStopAtLevel=1",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
        "-cp",
        f"{libs}/*",
        "kafka.Kafka",
        str(config),
    ]


def prepare_kafka(data_dir: Path, port: int, controller_port: int, cache_dir: Path) -> tuple[Path, Path]:
    """Write the broker config and format the storage on first use; return (libs, config path)."""
    libs = fetch_kafka(cache_dir)
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    config = data_dir / "server.properties"
    config.write_text(server_properties(data_dir, port, controller_port))
    if not (data_dir / "logs" / "meta.properties").exists():
        cluster_id = (
            subprocess.run(
                ["java", "-cp", f"{libs}/*", "kafka.tools.StorageTool", "random-uuid"],
                check=True,
                capture_output=True,
                text=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        subprocess.run(
            [
                "java",
                f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
                "-cp",
                f"{libs}/*",
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(config),
            ],
            check=True,
            capture_output=True,
        )
        log.info("formatted kafka storage", extra={"data_dir": str(data_dir), "cluster_id": cluster_id})
    return libs, config


def exec_kafka(data_dir: Path, port: int, controller_port: int, cache_dir: Path, heap: str = "768m") -> None:
    """Replace this process with the broker, so a supervisor's signals reach the JVM directly."""
    libs, config = prepare_kafka(data_dir, port, controller_port, cache_dir)
    command = kafka_command(libs, config, heap)
    os.execvp(command[0], command)


def redis_command(port: int, data_dir: Path) -> list[str]:
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    return [
        ensure_redis_server(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(data_dir),
        "--appendonly",
        "yes",
        "--daemonize",
        "no",
        "--save",
        "",
        "--protected-mode",
        "yes",
        "--logfile",
        "",
    ]
