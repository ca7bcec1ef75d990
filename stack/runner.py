"""The runner behind ``make up``/``make down``/``pipeline status``: every process under supervisord."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
import xmlrpc.client
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
from supervisor.xmlrpc import SupervisorTransport

from shared.settings import ConsumerServiceSettings, PipelineSettings

PYTHON = sys.executable

Stage = Literal["platform", "consumers"]
PLATFORM: Stage = "platform"
CONSUMERS: Stage = "consumers"
# Beyond a consumer's own shutdown deadline: time for the supervisor's signal and the process exit.
STOP_MARGIN_S = 15


@dataclass(frozen=True)
class Component:
    """One supervised process: its port and how to start it and tell that it is ready."""

    name: str
    port: int
    command: list[str]
    priority: int
    ready_url: str | None = None
    stopwaitsecs: int = 15
    url: str = ""
    # Consumers start only after the topic bootstrap: the runtime refuses to run without its DLQ.
    stage: Stage = PLATFORM
    environment: dict[str, str] = field(default_factory=dict)


class PortHeld(RuntimeError):
    """A port the pipeline needs is held by a process it did not start."""


def components(settings: PipelineSettings) -> list[Component]:
    """Every process of the local stack, from the settings (so ports follow the environment)."""
    from stack.services import SERVICES, port_of

    state = settings.state_path()
    # The HTTP services start before the consumers, the registry first; each in the order of SERVICES.
    http: list[tuple[str, int, str, int]] = []
    # Only ports and deadlines are read here: instance 0 keeps a production check from failing `pipeline status`.
    consumers: list[ConsumerServiceSettings] = []
    for service, service_settings in SERVICES.items():
        if issubclass(service_settings, ConsumerServiceSettings):
            consumers.append(service_settings(instance=0))
        else:
            http.append((service, port_of(service), f"services.{service}.app", 20 if service == "registry" else 30))
    result = [
        Component(
            "kafka",
            settings.kafka_port,
            [
                PYTHON,
                "-m",
                "stack.cli",
                "kafka",
                "run",
                "--data-dir",
                str(state / "kafka"),
                "--port",
                str(settings.kafka_port),
                "--controller-port",
                str(settings.kafka_controller_port),
            ],
            priority=10,
            stopwaitsecs=60,
            url=settings.kafka.bootstrap_servers,
        ),
        Component(
            "redis",
            settings.redis_port,
            [
                PYTHON,
                "-m",
                "stack.cli",
                "redis",
                "run",
                "--data-dir",
                str(state / "redis"),
                "--port",
                str(settings.redis_port),
            ],
            priority=10,
            url=settings.redis_url,
        ),
    ]
    for name, port, module, priority in http:
        base = f"http://127.0.0.1:{port}"
        result.append(Component(name, port, [PYTHON, "-m", module], priority, ready_url=f"{base}/readyz", url=base))
    for consumer in consumers:
        for name, port, environment in replicas(consumer):
            environment = {**environment, **consumer.stack_environment()}
            base = f"http://127.0.0.1:{port}"
            result.append(
                Component(
                    name,
                    port,
                    [PYTHON, "-m", f"services.{consumer.service}.app"],
                    40,
                    ready_url=f"{base}/readyz",
                    url=base,
                    stopwaitsecs=int(consumer.shutdown_timeout_s) + STOP_MARGIN_S,
                    stage=CONSUMERS,
                    environment=environment,
                )
            )
    return result


def replicas(consumer: ConsumerServiceSettings) -> list[tuple[str, int, dict[str, str]]]:
    """The processes of one consumer: (name, port, environment). ``INFERENCE_PROCESSES=N`` runs N inference
    processes in its group: ``inference`` (instance 0, its port) and ``inference-<i>`` (instance i, port +10*i)."""
    processes = getattr(consumer, "processes", 1)
    if processes <= 1:
        return [(consumer.service, consumer.port, {})]
    prefix = consumer.service.upper()
    return [
        (
            consumer.service if i == 0 else f"{consumer.service}-{i}",
            consumer.port + 10 * i,
            {f"{prefix}_INSTANCE": str(i), f"{prefix}_PORT": str(consumer.port + 10 * i)},
        )
        for i in range(processes)
    ]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


class Supervisor:
    """The supervisord that owns the stack's processes, with its config, socket and pid file in the state dir."""

    def __init__(self, settings: PipelineSettings) -> None:
        self.settings = settings
        self.state = settings.state_path()
        self.config = self.state / "supervisord.conf"
        self.socket = self.state / "supervisor.sock"
        self.pidfile = self.state / "supervisord.pid"
        self.logs = self.state / "logs"

    def rpc(self) -> Any:
        transport = SupervisorTransport(None, None, f"unix://{self.socket}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)

    def pid(self) -> int | None:
        """The live supervisord's pid, or None; a pid file naming a dead or foreign process is stale."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            cmdline = ""
        if "supervisord" not in cmdline or str(self.config) not in cmdline:
            return None
        return pid

    def running(self) -> bool:
        if self.pid() is None:
            return False
        try:
            return bool(self.rpc().supervisor.getState()["statename"] == "RUNNING")
        except (OSError, xmlrpc.client.Fault):
            return False

    def clear_stale(self) -> list[str]:
        """Remove a stale pid file and socket left by a supervisord that is gone; say what was removed."""
        removed = []
        if self.pidfile.exists() and self.pid() is None:
            self.pidfile.unlink()
            removed.append(str(self.pidfile))
        if self.socket.exists() and self.pid() is None:
            self.socket.unlink()
            removed.append(str(self.socket))
        return removed

    def write_config(self, parts: list[Component]) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        lines = [
            "; Written by `pipeline up`; edits are overwritten.",
            "[unix_http_server]",
            f"file={self.socket}",
            "chmod=0700",
            "",
            "[supervisord]",
            f"logfile={self.logs / 'supervisord.log'}",
            f"pidfile={self.pidfile}",
            f"childlogdir={self.logs}",
            f"directory={Path.cwd()}",
            "logfile_maxbytes=10MB",
            "",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
            "",
            "[supervisorctl]",
            f"serverurl=unix://{self.socket}",
            "",
        ]
        for part in parts:
            lines += [
                f"[program:{part.name}]",
                "command=" + " ".join(_quote(arg) for arg in part.command),
                f"priority={part.priority}",
                # The platform starts with the supervisor; consumers wait for `pipeline up`'s topic bootstrap.
                f"autostart={'true' if part.stage == PLATFORM else 'false'}",
                "autorestart=true",
                "startsecs=3",
                "startretries=10",
                f"stopwaitsecs={part.stopwaitsecs}",
                "stopasgroup=true",
                "killasgroup=true",
                "redirect_stderr=true",
                f"stdout_logfile={self.logs / (part.name + '.log')}",
                *(
                    ["environment=" + ",".join(f'{k}="{v}"' for k, v in part.environment.items())]
                    if part.environment
                    else []
                ),
                "stdout_logfile_maxbytes=20MB",
                "stdout_logfile_backups=2",
                "",
            ]
        self.config.write_text("\n".join(lines).replace("%", "%%"))

    def start_daemon(self) -> None:
        supervisord = str(Path(PYTHON).parent / "supervisord")
        os.spawnv(os.P_WAIT, supervisord, [supervisord, "-c", str(self.config)])
        deadline = time.monotonic() + 20
        while not self.running():
            if time.monotonic() > deadline:
                raise RuntimeError(f"supervisord did not start; see {self.logs / 'supervisord.log'}")
            time.sleep(0.1)

    def process_info(self) -> dict[str, dict[str, Any]]:
        if not self.running():
            return {}
        return {info["name"]: info for info in self.rpc().supervisor.getAllProcessInfo()}

    def shutdown(self, timeout_s: float | None = None) -> bool:
        """Stop every program and the supervisor; wait as long as its priority groups may take, one after another."""
        if timeout_s is None:
            groups: dict[int, int] = {}
            for part in components(self.settings):
                groups[part.priority] = max(groups.get(part.priority, 0), part.stopwaitsecs)
            timeout_s = float(sum(groups.values()) + 30)
        pid = self.pid()
        if pid is None or not self.running():
            return False
        self.rpc().supervisor.shutdown()
        deadline = time.monotonic() + timeout_s
        while Path(f"/proc/{pid}").exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"supervisord (pid {pid}) did not stop within {timeout_s:.0f}s")
            time.sleep(0.2)
        return True


def _quote(arg: str) -> str:
    return f'"{arg}"' if (" " in arg or not arg) else arg


def start(settings: PipelineSettings, stage: Stage) -> list[str]:
    """Start what is down among ``stage``'s components; return the names this call started."""
    parts = components(settings)
    supervisor = Supervisor(settings)
    fresh: list[str] = []
    if not supervisor.running():
        supervisor.clear_stale()
        held = [p for p in parts if port_open(p.port)]
        if held:
            raise PortHeld(
                "; ".join(
                    f"port {p.port} ({p.name}) is already in use by a process this stack did not start" for p in held
                )
            )
        supervisor.write_config(parts)
        supervisor.start_daemon()
        # The platform programs start with the daemon (autostart).
        fresh = [p.name for p in parts if p.stage == PLATFORM]
    info = supervisor.process_info()
    started = list(fresh) if stage == PLATFORM else []
    for part in parts:
        if part.stage != stage or part.name in fresh:
            continue
        state = info.get(part.name, {}).get("statename")
        if state in ("RUNNING", "STARTING", "BACKOFF"):
            continue
        if port_open(part.port):
            raise PortHeld(f"port {part.port} ({part.name}) is already in use by a process this stack did not start")
        with contextlib.suppress(xmlrpc.client.Fault):
            supervisor.rpc().supervisor.startProcess(part.name, False)
        started.append(part.name)
    return started


def wait_ready(settings: PipelineSettings, timeout_s: float = 180.0) -> dict[str, str]:
    """Wait until every HTTP component answers ``/readyz`` with 200; return name to last answer."""
    deadline = time.monotonic() + timeout_s
    pending = {p.name: p for p in components(settings) if p.ready_url}
    last: dict[str, str] = {}
    with httpx.Client(timeout=5.0) as client:
        while pending:
            for name, part in list(pending.items()):
                assert part.ready_url is not None
                try:
                    response = client.get(part.ready_url)
                    last[name] = f"{response.status_code} {response.text[:200]}"
                    if response.status_code == 200:
                        del pending[name]
                except httpx.HTTPError as exc:
                    last[name] = f"{type(exc).__name__}: {exc}"
            if pending and time.monotonic() > deadline:
                details = "; ".join(f"{n}: {last.get(n, 'no answer')}" for n in pending)
                raise TimeoutError(f"not ready after {timeout_s:.0f}s: {details}")
            if pending:
                time.sleep(0.5)
    return last


def status(settings: PipelineSettings) -> list[dict[str, Any]]:
    """One row per component: up/down, pid, port, supervisor state."""
    supervisor = Supervisor(settings)
    info = supervisor.process_info()
    rows = []
    for part in components(settings):
        proc = info.get(part.name, {})
        state = proc.get("statename", "NOT SUPERVISED" if not info else "UNKNOWN")
        listening = port_open(part.port)
        rows.append(
            {
                "name": part.name,
                "up": state == "RUNNING" and listening,
                "state": state,
                "pid": proc.get("pid") or None,
                "port": part.port,
                "listening": listening,
                "url": part.url,
            }
        )
    return rows
