"""`make k8s-check`: render every k8s overlay with kustomize, validate each object, cross-check it with the services."""

from __future__ import annotations

import argparse
import functools
import ipaddress
import os
import re
import subprocess
import sys
import time
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import jsonschema
import kubernetes_validate
import yaml
from pydantic import BaseModel, ValidationError
from pydantic_settings import BaseSettings

from shared.health import health_router
from shared.settings import ConsumerServiceSettings, PipelineSettings, ServiceSettings
from shared.topics import BY_NAME, RETRY_LEVELS, analytics_repartition_topic, replay_topic, retry_topic
from stack.services import SERVICES

REPO = Path(__file__).resolve().parent.parent
OVERLAYS_DIR = REPO / "k8s" / "overlays"
# The Kubernetes version whose OpenAPI schemas (shipped by kubernetes-validate) every core object must pass.
KUBERNETES_VERSION = "1.31.0"
PART_OF = "kafka-inference-pipeline"
NAME_LABEL = "app.kubernetes.io/name"
PART_OF_LABEL = "app.kubernetes.io/part-of"
Manifest = dict[str, Any]

# The settings fields naming the topics each consuming service reads (its retry and replay topics besides).
CONSUMED: dict[str, tuple[str, ...]] = {
    "enrichment": ("input_topic", "profiles_topic"),
    "inference": ("input_topic",),
    "notifier": ("input_topic",),
    "status": ("received_topic", "enriched_topic", "inferred_topic", "delivered_topic"),
    "analytics": ("inferred_topic", "delivered_topic"),
}
# Consumers on faust rather than the runtime: no retry or replay topics, a repartition topic of their own.
FAUST = frozenset({"analytics"})
# Reachable from anywhere: only these. Everything else listens to the pipeline, or to monitoring.
PUBLIC = frozenset({"intake", "ops"})
# Environment a process reads that is not a pipeline setting.
PROCESS_ENV = frozenset({"HOME", "HF_HUB_OFFLINE"})
# The Dockerfile's targets a service may run from (kafka-pipeline/<target>); the others run from python.
IMAGE_PREFIX = "kafka-pipeline/"
IMAGES_OF = {"inference": frozenset({"inference", "inference-cuda"}), "registry": frozenset({"registry", "python"})}


def dockerfile_targets(dockerfile: Path = REPO / "Dockerfile") -> set[str]:
    return set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)\s*$", dockerfile.read_text(), flags=re.MULTILINE | re.I))


def image_problem(service: str, image: str, targets: set[str]) -> str | None:
    """Why ``image`` is not one the service runs from (None when it is): a Dockerfile target of its own."""
    target = image.removeprefix(IMAGE_PREFIX).split(":")[0]
    allowed = IMAGES_OF.get(service, frozenset({"python"})) & targets
    if not image.startswith(IMAGE_PREFIX) or target not in allowed:
        return f"image {image!r} is not one of {sorted(IMAGE_PREFIX + t for t in allowed)} (Dockerfile targets)"
    return None


# The services that call webhooks: their egress is limited by a NetworkPolicy that selects only them.
WEBHOOK_CALLERS = frozenset({"intake", "notifier"})
# The notifier and intake may reach none of these (cluster, private and metadata ranges).
FORBIDDEN_EGRESS = tuple(
    ipaddress.ip_network(net) for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.169.254/32")
)
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")

# Custom resources are validated against the CRDs vendored here (pinned KEDA, Strimzi and Prometheus-operator
# releases, k8s/crds/README.md); a custom resource whose kind has none fails.
CRDS_DIR = REPO / "k8s" / "crds"
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# The JSON Schema keywords whose own error message would print the whole failing value.
JUNCTORS = frozenset({"anyOf", "oneOf", "allOf", "not"})


def kustomize() -> Path:
    """The pinned kustomize that `make setup` builds into the venv (``KUSTOMIZE`` overrides)."""
    return Path(os.environ.get("KUSTOMIZE") or Path(sys.executable).parent / "kustomize")


def render(overlay: Path) -> list[Manifest]:
    """``kustomize build <overlay>``, parsed."""
    binary = kustomize()
    if not binary.exists():
        raise FileNotFoundError(f"{binary} is missing: `make setup` builds it")
    done = subprocess.run([str(binary), "build", str(overlay)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"kustomize build {overlay} failed: {done.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def overlays() -> list[Path]:
    return sorted(path for path in OVERLAYS_DIR.iterdir() if (path / "kustomization.yaml").exists())


# --- settings -------------------------------------------------------------------------------------------------


def _models(annotation: Any) -> Iterator[type[BaseModel]]:
    """The pydantic models an annotation names (``X``, ``X | None``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    elif typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            yield from _models(arg)


def env_names(settings: type[BaseSettings], prefix: str | None = None) -> set[str]:
    """Every environment variable a settings class reads: prefix and field, nested blocks with ``__``.

    A field that is a settings class of its own (``pipeline``, ``kafka``) reads its own prefix, so it is left out
    here and added by its own class.
    """
    config = settings.model_config
    prefix = str(config.get("env_prefix", "")) if prefix is None else prefix
    delimiter = config.get("env_nested_delimiter")
    names: set[str] = set()
    for field, info in settings.model_fields.items():
        models = list(_models(info.annotation))
        if any(issubclass(model, BaseSettings) for model in models):
            continue
        name = f"{prefix}{field}".upper()
        names.add(name)
        if delimiter:
            for model in models:
                names |= _nested(f"{name}{delimiter}", model, str(delimiter))
    return names


def _nested(prefix: str, model: type[BaseModel], delimiter: str) -> set[str]:
    names: set[str] = set()
    for field, info in model.model_fields.items():
        name = f"{prefix}{field}".upper()
        names.add(name)
        for sub in _models(info.annotation):
            names |= _nested(f"{name}{delimiter}", sub, delimiter)
    return names


def shared_env_names() -> set[str]:
    """``PIPELINE_*`` and ``PIPELINE_KAFKA_*``: what every service reads besides its own."""
    names = env_names(PipelineSettings)
    for info in PipelineSettings.model_fields.values():
        for model in _models(info.annotation):
            if issubclass(model, BaseSettings):
                names |= env_names(model)
    return names


def default(settings: type[BaseModel], field: str) -> Any:
    info = settings.model_fields[field]
    return info.default_factory() if info.default_factory is not None else info.default  # type: ignore[call-arg]


def routes(service: str) -> set[str]:
    """The paths every service serves for probes and scraping (``shared.health``)."""
    return {str(getattr(route, "path", "")) for route in health_router(service, {}).routes}


def consumed_topics(service: str, values: dict[str, str]) -> list[str]:
    settings = SERVICES[service]
    prefix = str(settings.model_config.get("env_prefix", ""))
    name = values.get(f"{prefix}NAME", default(settings, "name"))
    topics = [values.get(f"{prefix}{field}".upper(), default(settings, field)) for field in CONSUMED[service]]
    if service in FAUST:
        return [*topics, analytics_repartition_topic(name)]
    topics += [retry_topic(name, level) for level in range(1, RETRY_LEVELS + 1)] + [replay_topic(name)]
    return topics


# --- the check ------------------------------------------------------------------------------------------------


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    return obj


def _id(obj: Manifest) -> str:
    return f"{obj.get('kind')}/{_get(obj, 'metadata', 'name')}"


# --- custom resources -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Crd:
    """One version of a vendored CustomResourceDefinition."""

    source: str  # the vendored file, relative to the repository
    served: bool
    schema: Manifest  # its openAPIV3Schema, as upstream wrote it


def group_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


@functools.cache
def crds() -> dict[tuple[str, str, str], Crd]:
    """Every version of every CustomResourceDefinition vendored under k8s/crds/, by (group, version, kind)."""
    found: dict[tuple[str, str, str], Crd] = {}
    for path in sorted(CRDS_DIR.rglob("*.yaml")):
        for doc in yaml.load_all(path.read_text(), Loader=YAML_LOADER):
            if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                source = path.relative_to(REPO).as_posix()
                schema = _get(version, "schema", "openAPIV3Schema") or {}
                key = (spec["group"], version["name"], spec["names"]["kind"])
                found[key] = Crd(source, bool(version.get("served")), schema)
    return found


def _types(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def structural(schema: Manifest, *, root: bool = False) -> Manifest:
    """A CRD's structural schema as a JSON Schema (draft 4, whose boolean ``exclusiveMinimum`` is OpenAPI 3.0's)
    that accepts what the API server accepts with strict field validation (``kubectl --validate=strict``).

    ``x-kubernetes-int-or-string``: an integer or a string. ``nullable``: null as well.
    ``x-kubernetes-preserve-unknown-fields``: fields the schema does not name are let through; elsewhere an object
    takes only the fields its ``properties`` name (or what its ``additionalProperties`` allow).
    ``x-kubernetes-list-type: set``: unique items. ``apiVersion``, ``kind`` and ``metadata`` of the object itself
    (and of an ``x-kubernetes-embedded-resource``) are the API server's: any metadata passes here.
    The value validations in ``allOf``/``anyOf``/``oneOf``/``not`` are kept as they are. Not checked: CEL rules
    (``x-kubernetes-validations``), the keys of ``x-kubernetes-list-type: map`` lists, ``format``.
    """
    out = dict(schema)
    if out.get("x-kubernetes-int-or-string") and "type" not in out:
        out["type"] = ["integer", "string"]
    if out.get("nullable"):
        if "type" in out:
            out["type"] = [*_types(out["type"]), "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    if out.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    if "properties" in out:
        out["properties"] = {name: structural(sub) for name, sub in out["properties"].items()}
    if root or out.get("x-kubernetes-embedded-resource"):
        properties = out.setdefault("properties", {})
        properties.setdefault("apiVersion", {"type": "string"})
        properties.setdefault("kind", {"type": "string"})
        properties["metadata"] = {} if root else properties.get("metadata", {"type": "object"})
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = structural(out["additionalProperties"])
    elif (
        "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
        and ("properties" in out or out.get("type") == "object")
    ):
        out["additionalProperties"] = False
    if isinstance(out.get("items"), dict):
        out["items"] = structural(out["items"])
    return out


@functools.cache
def crd_validator(key: tuple[str, str, str]) -> Any:
    return jsonschema.Draft4Validator(structural(crds()[key].schema, root=True))


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def crd_errors(obj: Manifest, key: tuple[str, str, str]) -> list[tuple[str, str]]:
    """(path, message) for every way ``obj`` breaks the schema of its vendored CRD, in the order of the paths."""
    found: list[tuple[list[Any], str]] = []
    errors = list(crd_validator(key).iter_errors(obj))
    mistyped = {tuple(error.absolute_path) for error in errors if error.validator == "type"}
    for error in errors:
        path = list(error.absolute_path)
        if error.validator != "type" and tuple(path) in mistyped:
            continue  # a value of the wrong type: the rest of what its schema says is noise
        if error.validator == "additionalProperties" and error.validator_value is False:
            known = error.schema.get("properties") or {}
            found += [([*path, field], "unknown field") for field in error.instance if field not in known]
        elif error.validator == "not":
            found.append((path, "matches a form its schema forbids (not)"))
        elif error.validator in JUNCTORS and not error.context:
            found.append((path, f"matches more than one of its {error.validator} forms"))
        elif error.validator in JUNCTORS:
            reasons = "; ".join(_short(sub.message, 80) for sub in error.context[:3])
            found.append((path, f"matches none of its {error.validator} forms ({reasons})"))
        else:
            found.append((path, _short(error.message)))
    found.sort(key=lambda item: [str(part) for part in item[0]])
    return [(".".join(str(part) for part in path), message) for path, message in found]


@dataclass
class Workload:
    """One pipeline service's Deployment or StatefulSet, with the environment its container gets."""

    service: str
    obj: Manifest
    values: dict[str, str]

    @property
    def settings(self) -> type[ServiceSettings]:
        return SERVICES[self.service]

    @property
    def prefix(self) -> str:
        return str(self.settings.model_config.get("env_prefix", ""))

    def setting(self, field: str) -> Any:
        return self.values.get(f"{self.prefix}{field}".upper(), default(self.settings, field))

    def port(self) -> int:
        value = str(self.setting("port"))
        return int(value) if value.isdigit() else -1

    @property
    def consumer(self) -> bool:
        return issubclass(self.settings, ConsumerServiceSettings)

    def max_replicas(self) -> int:
        """The fewest partitions among the topics it consumes: replicas beyond that would sit idle."""
        return min(
            BY_NAME[topic].partitions for topic in consumed_topics(self.service, self.values) if topic in BY_NAME
        )


class Checker:
    """Every problem of one rendered overlay, as lines of text."""

    def __init__(self, objects: list[Manifest]) -> None:
        self.objects = objects
        self.errors: list[str] = []
        self.by_kind: dict[str, dict[str, Manifest]] = {}
        for obj in objects:
            self.by_kind.setdefault(str(obj.get("kind")), {})[str(_get(obj, "metadata", "name"))] = obj
        self.workloads: dict[str, Workload] = {}
        self.targets = dockerfile_targets()

    def fail(self, obj: Manifest, message: str) -> None:
        self.errors.append(f"{_id(obj)}: {message}")

    def run(self) -> list[str]:
        for obj in self.objects:
            self.schema(obj)
        for kind in ("Deployment", "StatefulSet"):
            for obj in self.by_kind.get(kind, {}).values():
                if _get(obj, "metadata", "labels", PART_OF_LABEL) == PART_OF:
                    self.workload(obj)
        for service in SERVICES:
            if service not in self.workloads:
                self.errors.append(f"{service}: no Deployment or StatefulSet")
        for obj in self.by_kind.get("Service", {}).values():
            self.service(obj)
        for obj in self.by_kind.get("ScaledObject", {}).values():
            self.scaled_object(obj)
        for obj in self.by_kind.get("HorizontalPodAutoscaler", {}).values():
            self.hpa(obj)
        for obj in self.by_kind.get("KafkaTopic", {}).values():
            self.topic(obj)
        self.network_policies()
        return self.errors

    # --- every object

    def schema(self, obj: Manifest) -> None:
        name = _get(obj, "metadata", "name")
        if not isinstance(name, str) or not DNS1123_SUBDOMAIN.match(name) or len(name) > 253:
            self.fail(obj, f"metadata.name {name!r} is not a DNS-1123 subdomain")
        kind = str(obj.get("kind"))
        group, version = group_version(str(obj.get("apiVersion")))
        if self.custom(obj, (group, version, kind)):
            return
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(part) for part in exc.path)
            self.fail(obj, f"invalid for Kubernetes {KUBERNETES_VERSION} at {where or '(top)'}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError:
            self.fail(
                obj,
                f"no Kubernetes {KUBERNETES_VERSION} schema and no vendored CRD for {obj.get('apiVersion')} {kind}: "
                f"vendor its CustomResourceDefinition into k8s/crds/ (see k8s/crds/README.md)",
            )

    def custom(self, obj: Manifest, key: tuple[str, str, str]) -> bool:
        """Validate a custom resource against its vendored CRD; False when no vendored CRD has its group and kind."""
        group, version, kind = key
        versions = {v: crd for (g, v, k), crd in crds().items() if (g, k) == (group, kind)}
        if not versions:
            return False
        crd = versions.get(version)
        if crd is None or not crd.served:
            served = ", ".join(sorted(f"{group}/{v}" for v, c in versions.items() if c.served)) or "nothing"
            source = next(iter(versions.values())).source
            self.fail(
                obj, f"apiVersion {obj.get('apiVersion')!r} is not served by its CRD ({source}), which serves {served}"
            )
            return True
        for where, message in crd_errors(obj, key):
            self.fail(obj, f"invalid for its CRD ({crd.source}) at {where or '(top)'}: {message}")
        return True

    # --- workloads

    def environment(self, obj: Manifest, container: Manifest) -> dict[str, str]:
        """The container's environment as kustomize rendered it: ConfigMaps and Secrets (when rendered), then env."""
        values: dict[str, str] = {}
        for source in container.get("envFrom") or []:
            if "configMapRef" in source:
                ref = source["configMapRef"]["name"]
                config = self.by_kind.get("ConfigMap", {}).get(ref)
                if config is None:
                    self.fail(obj, f"envFrom names ConfigMap {ref}, which is not rendered")
                    continue
                values.update({k: str(v) for k, v in (config.get("data") or {}).items()})
            elif "secretRef" in source:
                # Production's Secret is created out of band; the dev overlay's is checked like a ConfigMap.
                secret = self.by_kind.get("Secret", {}).get(source["secretRef"]["name"])
                if secret is not None:
                    keys = {**(secret.get("data") or {}), **(secret.get("stringData") or {})}
                    values.update({key: "(secret)" for key in keys})
        for entry in container.get("env") or []:
            values[entry["name"]] = str(entry.get("value", "(from a reference)"))
        return values

    def workload(self, obj: Manifest) -> None:
        service = str(_get(obj, "metadata", "labels", NAME_LABEL))
        if service not in SERVICES:
            self.fail(obj, f"{NAME_LABEL}={service!r} is not a service ({', '.join(SERVICES)})")
            return
        pod = _get(obj, "spec", "template", "spec") or {}
        containers = pod.get("containers") or []
        main = next((c for c in containers if c.get("name") == service), None)
        if main is None:
            self.fail(obj, f"no container named {service}")
            return
        work = Workload(service, obj, self.environment(obj, main))
        self.workloads[service] = work
        problem = image_problem(service, str(main.get("image", "")), self.targets)
        if problem:
            self.fail(obj, problem)
        self.env_vars(work)
        self.env_values(work)
        self.command(work, main)
        port = self.ports(work, main)
        self.probes(work, main, port)
        self.security(work, pod, containers)
        self.lifecycle(work, pod)

    def env_vars(self, work: Workload) -> None:
        known = env_names(work.settings) | shared_env_names() | PROCESS_ENV
        for var in sorted(work.values):
            if var not in known:
                self.fail(work.obj, f"env {var} is not a setting of {work.settings.__name__} or PipelineSettings")
        if work.setting("host") != "0.0.0.0":
            self.fail(work.obj, f"{work.prefix}HOST must be 0.0.0.0 (the default listens on 127.0.0.1 only)")

    def env_values(self, work: Workload) -> None:
        """The settings class reads the environment as the pod would give it (values from a reference and
        production's Secret, which is not rendered, stand in as placeholders) and must accept it."""
        env = {key: value for key, value in work.values.items() if key not in PROCESS_ENV}
        env.setdefault("PIPELINE_DEV_API_KEY", "(from the Secret)")
        extra: dict[str, Any] = {"instance": 0} if work.consumer else {}
        try:
            with mock.patch.dict(os.environ, env, clear=True):
                work.settings(**extra)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(model)'}: {e['msg']}" for e in exc.errors())
            self.fail(work.obj, f"{work.settings.__name__} refuses its environment: {problems}")

    def command(self, work: Workload, container: Manifest) -> None:
        command = list(container.get("command") or []) + list(container.get("args") or [])
        module = f"services.{work.service}.app"
        if command[1:3] != ["-m", module] or not (REPO / "services" / work.service / "app.py").exists():
            self.fail(work.obj, f"command {command} does not run `python -m {module}`")

    def ports(self, work: Workload, container: Manifest) -> int:
        port = work.port()
        declared = {p.get("name"): p.get("containerPort") for p in container.get("ports") or []}
        if declared.get("http") != port:
            self.fail(work.obj, f"containerPort http is {declared.get('http')}, the service listens on {port}")
        return port

    def probes(self, work: Workload, container: Manifest, port: int) -> None:
        served = routes(work.service)
        declared = {p.get("name"): p.get("containerPort") for p in container.get("ports") or []}
        for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
            probe = container.get(kind)
            if probe is None:
                if kind != "startupProbe":
                    self.fail(work.obj, f"no {kind}")
                continue
            get = probe.get("httpGet") or {}
            path, target = get.get("path"), get.get("port")
            if path not in served:
                self.fail(work.obj, f"{kind} path {path!r} is not served ({', '.join(sorted(served))})")
            resolved = declared.get(target) if isinstance(target, str) else target
            if resolved != port:
                self.fail(work.obj, f"{kind} port {target!r} is not the service's port {port}")
        if container.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/readyz":
            self.fail(work.obj, "readinessProbe must ask /readyz")

    def security(self, work: Workload, pod: Manifest, containers: list[Manifest]) -> None:
        if _get(pod, "securityContext", "runAsNonRoot") is not True:
            self.fail(work.obj, "pod securityContext.runAsNonRoot must be true")
        volumes = {v.get("name"): v for v in pod.get("volumes") or []}
        for container in containers:
            context = container.get("securityContext") or {}
            if context.get("readOnlyRootFilesystem") is not True:
                self.fail(work.obj, f"container {container.get('name')}: readOnlyRootFilesystem must be true")
            if context.get("allowPrivilegeEscalation") is not False:
                self.fail(work.obj, f"container {container.get('name')}: allowPrivilegeEscalation must be false")
            if "ALL" not in (_get(context, "capabilities", "drop") or []):
                self.fail(work.obj, f"container {container.get('name')}: capabilities must drop ALL")
            tmp = [m for m in container.get("volumeMounts") or [] if m.get("mountPath") == "/tmp"]
            if not tmp or "emptyDir" not in volumes.get(tmp[0].get("name"), {}):
                self.fail(work.obj, f"container {container.get('name')}: /tmp must be an emptyDir")
            if "memory" not in (_get(container, "resources", "limits") or {}):
                self.fail(work.obj, f"container {container.get('name')}: no memory limit")
            if not _get(container, "resources", "requests"):
                self.fail(work.obj, f"container {container.get('name')}: no resource requests")

    def lifecycle(self, work: Workload, pod: Manifest) -> None:
        grace = pod.get("terminationGracePeriodSeconds")
        replicas = _get(work.obj, "spec", "replicas")
        replicas = replicas if isinstance(replicas, int) else 1  # a wrong type is the schema check's finding
        if work.consumer:
            try:
                deadline = float(work.setting("shutdown_timeout_s"))
            except ValueError:
                deadline = float(default(work.settings, "shutdown_timeout_s"))
                self.fail(work.obj, f"{work.prefix}SHUTDOWN_TIMEOUT_S is not a number")
            if not isinstance(grace, int) or grace <= deadline:
                self.fail(work.obj, f"terminationGracePeriodSeconds {grace} must exceed shutdown_timeout_s {deadline}")
            # The pod name's ordinal is the instance: transactional.id and group.instance.id, unique and stable.
            if work.obj.get("kind") != "StatefulSet" and replicas > 1:
                self.fail(
                    work.obj, "a consumer with several replicas must be a StatefulSet (its ordinal is its instance)"
                )
            if replicas > work.max_replicas():
                self.fail(work.obj, f"replicas {replicas} exceed the {work.max_replicas()} partitions it consumes")
        elif grace is None:
            self.fail(work.obj, "no terminationGracePeriodSeconds")
        if _get(work.obj, "spec", "template", "metadata", "annotations", "prometheus.io/scrape") != "true":
            self.fail(work.obj, "no prometheus.io/scrape annotation")

    # --- what points at workloads

    def service(self, obj: Manifest) -> None:
        service = _get(obj, "spec", "selector", NAME_LABEL)
        work = self.workloads.get(str(service))
        if work is None:
            return
        port = work.port()
        if [p.get("port") for p in _get(obj, "spec", "ports") or []] != [port]:
            self.fail(obj, f"ports must be [{port}], the port {service} listens on")

    def target(self, obj: Manifest, ref: Manifest) -> Workload | None:
        work = self.workloads.get(str(ref.get("name")))
        if work is None or work.obj.get("kind") != ref.get("kind"):
            self.fail(obj, f"scaleTargetRef {ref.get('kind')}/{ref.get('name')} is not a rendered workload")
            return None
        return work

    def scaled_object(self, obj: Manifest) -> None:
        work = self.target(obj, _get(obj, "spec", "scaleTargetRef") or {})
        if work is None:
            return
        if not work.consumer:
            self.fail(obj, f"{work.service} consumes nothing: no lag to scale on")
            return
        most, least = _get(obj, "spec", "maxReplicaCount"), _get(obj, "spec", "minReplicaCount")
        if not isinstance(most, int) or most > work.max_replicas():
            self.fail(obj, f"maxReplicaCount {most} exceeds the {work.max_replicas()} partitions it consumes")
        if isinstance(least, int) and isinstance(most, int) and least > most:
            self.fail(obj, f"minReplicaCount {least} above maxReplicaCount {most}")
        topics = consumed_topics(work.service, work.values)
        for trigger in _get(obj, "spec", "triggers") or []:
            meta = trigger.get("metadata") or {}
            if trigger.get("type") != "kafka":
                self.fail(obj, f"trigger {trigger.get('type')!r}: only kafka lag triggers are expected")
                continue
            if meta.get("consumerGroup") != work.setting("name"):
                self.fail(obj, f"consumerGroup {meta.get('consumerGroup')!r} is not {work.setting('name')!r}")
            if "topic" in meta and meta["topic"] not in topics:
                self.fail(obj, f"topic {meta['topic']!r} is not one {work.service} consumes")
            if meta.get("bootstrapServers") != work.values.get("PIPELINE_KAFKA_BOOTSTRAP_SERVERS"):
                self.fail(obj, "bootstrapServers differ from PIPELINE_KAFKA_BOOTSTRAP_SERVERS")

    def hpa(self, obj: Manifest) -> None:
        work = self.target(obj, _get(obj, "spec", "scaleTargetRef") or {})
        if work is not None and work.consumer:
            self.fail(obj, f"{work.service} consumes: scale it on lag (a ScaledObject), not CPU")

    def topic(self, obj: Manifest) -> None:
        name = _get(obj, "spec", "topicName") or _get(obj, "metadata", "name")
        spec = BY_NAME.get(str(name))
        if spec is None:
            self.fail(obj, f"topic {name!r} is not in shared/topics.py")
        elif _get(obj, "spec", "partitions") != spec.partitions:
            self.fail(obj, f"partitions {_get(obj, 'spec', 'partitions')}, shared/topics.py says {spec.partitions}")
        cluster = _get(obj, "metadata", "labels", "strimzi.io/cluster")
        if cluster not in self.by_kind.get("Kafka", {}):
            self.fail(obj, f"strimzi.io/cluster {cluster!r} names no rendered Kafka")

    def network_policies(self) -> None:
        policies = list(self.by_kind.get("NetworkPolicy", {}).values())
        for policy in policies:
            for rule in _get(policy, "spec", "ingress") or []:
                if not rule.get("from") and not self._selects_only(policy, PUBLIC):
                    self.fail(policy, f"ingress from anywhere to pods other than {', '.join(sorted(PUBLIC))}")
        limited = [
            p
            for p in policies
            if "Egress" in (_get(p, "spec", "policyTypes") or []) and self._selects_only(p, WEBHOOK_CALLERS)
        ]
        for caller in sorted(WEBHOOK_CALLERS):
            if not any(self._selects(p, caller) for p in limited):
                self.errors.append(f"NetworkPolicy: none limits the {caller}'s egress")
        for policy in limited:
            callers = " and ".join(sorted(c for c in WEBHOOK_CALLERS if self._selects(policy, c)))
            for rule in _get(policy, "spec", "egress") or []:
                for peer in rule.get("to") or [{}]:
                    block = peer.get("ipBlock")
                    if block is None:
                        continue
                    cidr = ipaddress.ip_network(block["cidr"])
                    excepted = [ipaddress.ip_network(net) for net in block.get("except") or []]
                    for forbidden in FORBIDDEN_EGRESS:
                        if forbidden.version != cidr.version or not forbidden.subnet_of(cidr):  # type: ignore[arg-type]
                            continue
                        if not any(
                            net.version == forbidden.version and forbidden.subnet_of(net)  # type: ignore[arg-type]
                            for net in excepted
                        ):
                            self.fail(policy, f"egress to {cidr} lets the {callers} reach {forbidden}")

    @staticmethod
    def _selects(policy: Manifest, service: str) -> bool:
        """Whether the policy's pod selector takes ``service``'s pods (by their name label)."""
        selector = _get(policy, "spec", "podSelector") or {}
        labels = selector.get("matchLabels") or {}
        if NAME_LABEL in labels:
            return bool(labels[NAME_LABEL] == service)
        return any(
            expression.get("key") == NAME_LABEL
            and expression.get("operator") == "In"
            and service in (expression.get("values") or [])
            for expression in selector.get("matchExpressions") or []
        )

    @staticmethod
    def _selects_only(policy: Manifest, services: frozenset[str]) -> bool:
        selector = _get(policy, "spec", "podSelector") or {}
        labels = selector.get("matchLabels") or {}
        if NAME_LABEL in labels:
            return labels[NAME_LABEL] in services
        for expression in selector.get("matchExpressions") or []:
            if expression.get("key") == NAME_LABEL and expression.get("operator") == "In":
                return set(expression.get("values") or []) <= services
        return False


def check(objects: list[Manifest]) -> list[str]:
    """Every problem found in one rendered overlay (empty: fine)."""
    return Checker(objects).run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("overlays", nargs="*", type=Path, help="overlay folders (default: every k8s/overlays/*)")
    args = parser.parse_args(argv)
    failed = False
    for overlay in args.overlays or overlays():
        started = time.perf_counter()
        objects = render(overlay)
        errors = check(objects)
        took = time.perf_counter() - started
        status = "ok" if not errors else f"{len(errors)} problem(s)"
        sys.stdout.write(f"{overlay.name}: {len(objects)} objects, {status} ({took:.1f} s)\n")
        for error in errors:
            sys.stdout.write(f"  {error}\n")
        failed = failed or bool(errors)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
