"""k8s/: the generated KafkaTopics are current, the overlays pass `make k8s-check`, and the check catches breakage."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import jsonschema
import pytest

from shared.topics import TOPICS
from stack.services import SERVICES
from tools import k8s_check, k8s_topics
from tools.k8s_check import Manifest

Objects = list[Manifest]


@pytest.fixture(scope="module")
def rendered() -> dict[str, Objects]:
    return {overlay.name: k8s_check.render(overlay) for overlay in k8s_check.overlays()}


def find(objects: Objects, kind: str, name: str) -> Manifest:
    return next(obj for obj in objects if obj["kind"] == kind and obj["metadata"]["name"] == name)


def container(objects: Objects, kind: str, name: str) -> dict[str, Any]:
    main: dict[str, Any] = find(objects, kind, name)["spec"]["template"]["spec"]["containers"][0]
    return main


def broken(rendered: dict[str, Objects], overlay: str, change: Callable[[Objects], None]) -> list[str]:
    objects = copy.deepcopy(rendered[overlay])
    change(objects)
    return k8s_check.check(objects)


@pytest.mark.parametrize("overlay", sorted(k8s_topics.CLUSTERS))
def test_checked_in_topics_are_what_the_generator_writes(overlay: str) -> None:
    assert k8s_topics.path_of(overlay).read_text() == k8s_topics.render(overlay)


def test_topic_names_become_valid_resource_names() -> None:
    assert k8s_topics.resource_name("_schemas") == "schemas"
    assert k8s_topics.resource_name("events.received.v1") == "events.received.v1"
    assert len({k8s_topics.resource_name(spec.name) for spec in TOPICS}) == len(TOPICS)


def test_both_overlays_render_and_pass(rendered: dict[str, Objects]) -> None:
    assert set(rendered) == {"dev", "production"}
    for overlay, objects in rendered.items():
        assert k8s_check.check(objects) == [], overlay


def test_production_runs_inference_on_gpus_in_bf16(rendered: dict[str, Objects]) -> None:
    objects = rendered["production"]
    inference = container(objects, "StatefulSet", "inference")
    assert inference["resources"]["limits"]["nvidia.com/gpu"] == 1
    pod = find(objects, "StatefulSet", "inference")["spec"]["template"]["spec"]
    assert pod["nodeSelector"] and pod["tolerations"]
    configs = [obj for obj in objects if obj["kind"] == "ConfigMap" and obj["metadata"]["name"].startswith("inference")]
    assert configs[0]["data"]["INFERENCE_DTYPE"] == "bfloat16"
    assert not [obj for obj in objects if obj["kind"] == "Secret"]


def test_every_topic_has_a_kafka_topic_in_each_overlay(rendered: dict[str, Objects]) -> None:
    for objects in rendered.values():
        names = {obj["spec"]["topicName"] for obj in objects if obj["kind"] == "KafkaTopic"}
        assert names == {spec.name for spec in TOPICS}


def test_an_unknown_env_var_fails(rendered: dict[str, Objects]) -> None:
    def change(objects: Objects) -> None:
        container(objects, "Deployment", "intake")["env"] = [{"name": "INTAKE_WORKER", "value": "4"}]

    errors = broken(rendered, "dev", change)
    assert any("env INTAKE_WORKER is not a setting" in error for error in errors), errors


def test_a_value_the_settings_refuse_fails(rendered: dict[str, Objects]) -> None:
    def change(objects: Objects) -> None:
        config = next(obj for obj in objects if obj["metadata"]["name"].startswith("inference-config"))
        config["data"]["INFERENCE_DTYPE"] = "bf16"

    errors = broken(rendered, "production", change)
    assert any("InferenceSettings refuses its environment: dtype:" in error for error in errors), errors


def test_nested_and_shared_env_vars_are_known() -> None:
    names = k8s_check.env_names(SERVICES["inference"]) | k8s_check.shared_env_names()
    assert {"INFERENCE_RUNTIME__MAX_BATCH_SIZE", "INFERENCE_DTYPE", "PIPELINE_KAFKA_BOOTSTRAP_SERVERS"} <= names
    assert "INFERENCE_PIPELINE" not in names


def test_a_wrong_probe_path_fails(rendered: dict[str, Objects]) -> None:
    def change(objects: Objects) -> None:
        container(objects, "StatefulSet", "notifier")["livenessProbe"]["httpGet"]["path"] = "/health"

    errors = broken(rendered, "dev", change)
    assert any("livenessProbe path '/health' is not served" in error for error in errors), errors


def test_a_wrong_probe_port_fails(rendered: dict[str, Objects]) -> None:
    def change(objects: Objects) -> None:
        container(objects, "StatefulSet", "status")["readinessProbe"]["httpGet"]["port"] = 9104

    errors = broken(rendered, "production", change)
    assert any("readinessProbe port 9104 is not the service's port 9105" in error for error in errors), errors


def test_replicas_over_the_partitions_fail(rendered: dict[str, Objects]) -> None:
    def change(objects: Objects) -> None:
        find(objects, "StatefulSet", "inference")["spec"]["replicas"] = 13
        find(objects, "ScaledObject", "enrichment")["spec"]["maxReplicaCount"] = 24

    errors = broken(rendered, "production", change)
    assert any("StatefulSet/inference: replicas 13 exceed the 12 partitions" in error for error in errors), errors
    assert any("ScaledObject/enrichment: maxReplicaCount 24 exceeds" in error for error in errors), errors


def test_an_invalid_deployment_fails_the_schema(rendered: dict[str, Objects]) -> None:
    def change(objects: Objects) -> None:
        find(objects, "Deployment", "ops")["spec"]["replicas"] = "two"

    errors = broken(rendered, "dev", change)
    assert any("Deployment/ops: invalid for Kubernetes 1.31.0 at spec.replicas" in error for error in errors), errors


def test_an_unknown_field_fails_the_strict_schema(rendered: dict[str, Objects]) -> None:
    def change(objects: Objects) -> None:
        container(objects, "Deployment", "ops")["imagePullPolicy_"] = "Always"

    errors = broken(rendered, "dev", change)
    assert any(e.startswith("Deployment/ops: invalid") and "imagePullPolicy_" in e for e in errors), errors


def test_a_custom_resource_without_its_required_fields_fails(rendered: dict[str, Objects]) -> None:
    def change(objects: Objects) -> None:
        del find(objects, "Kafka", "pipeline")["spec"]["kafka"]["listeners"]
        find(objects, "KafkaNodePool", "dual-role")["apiVersion"] = "kafka.strimzi.io/v1alpha1"

    errors = broken(rendered, "dev", change)
    assert (
        "Kafka/pipeline: invalid for its CRD (k8s/crds/strimzi/040-Crd-kafka.yaml) at spec.kafka: "
        "'listeners' is a required property" in errors
    ), errors
    assert any(
        e.startswith("KafkaNodePool/dual-role: apiVersion 'kafka.strimzi.io/v1alpha1' is not served by its CRD")
        and e.endswith("which serves kafka.strimzi.io/v1beta2")
        for e in errors
    ), errors


def test_the_overlays_custom_resources_all_have_a_vendored_crd(rendered: dict[str, Objects]) -> None:
    served = {(group, version, kind) for (group, version, kind), crd in k8s_check.crds().items() if crd.served}
    for objects in rendered.values():
        for obj in objects:
            group, version = k8s_check.group_version(obj["apiVersion"])
            if "." in group and not group.endswith(".k8s.io"):
                assert (group, version, obj["kind"]) in served, obj["kind"]


def test_a_custom_resource_field_of_the_wrong_type_fails(rendered: dict[str, Objects]) -> None:
    def change(objects: Objects) -> None:
        find(objects, "KafkaTopic", "events.received.v1")["spec"]["partitions"] = "twelve"

    errors = broken(rendered, "production", change)
    assert (
        "KafkaTopic/events.received.v1: invalid for its CRD (k8s/crds/strimzi/043-Crd-kafkatopic.yaml) "
        "at spec.partitions: 'twelve' is not of type 'integer'" in errors
    ), errors


def test_an_unknown_field_in_a_custom_resource_fails(rendered: dict[str, Objects]) -> None:
    def change(objects: Objects) -> None:
        find(objects, "ScaledObject", "inference")["spec"]["pollingIntervall"] = 5
        find(objects, "ScaledObject", "notifier")["spec"]["triggers"][0]["metadat"] = {}

    errors = broken(rendered, "dev", change)
    crd = "invalid for its CRD (k8s/crds/keda/keda.sh_scaledobjects.yaml)"
    assert f"ScaledObject/inference: {crd} at spec.pollingIntervall: unknown field" in errors, errors
    assert f"ScaledObject/notifier: {crd} at spec.triggers.0.metadat: unknown field" in errors, errors


def test_an_int_or_string_quantity_and_free_form_config_pass_and_a_list_does_not(rendered: dict[str, Objects]) -> None:
    def change(objects: Objects) -> None:
        pool = find(objects, "KafkaNodePool", "dual-role")
        pool["spec"]["resources"]["requests"]["cpu"] = 1  # x-kubernetes-int-or-string
        pool["spec"]["resources"]["limits"]["memory"] = ["2Gi"]
        find(objects, "Kafka", "pipeline")["spec"]["kafka"]["config"]["any.broker.setting"] = {"x": 1}  # preserved

    errors = broken(rendered, "dev", change)
    assert errors == [
        "KafkaNodePool/dual-role: invalid for its CRD (k8s/crds/strimzi/045-Crd-kafkanodepool.yaml) "
        "at spec.resources.limits.memory: ['2Gi'] is not of type 'integer', 'string'"
    ]


def test_structural_schema_translation() -> None:
    schema = k8s_check.structural(
        {
            "type": "object",
            "properties": {
                "port": {"x-kubernetes-int-or-string": True},
                "mode": {"type": "string", "enum": ["a", "b"], "nullable": True},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        root=True,
    )
    validator = jsonschema.Draft4Validator(schema)
    good = {"apiVersion": "x/v1", "kind": "X", "metadata": {"any": {"thing": 1}}, "port": "http", "mode": None}
    assert not list(validator.iter_errors({**good, "port": 8080, "free": {"a": [1]}, "labels": {"a": "b"}}))
    for bad in ({"port": 1.5}, {"mode": "c"}, {"labels": {"a": 1}}, {"unknown": 1}):
        assert list(validator.iter_errors({**good, **bad})), bad


SERVICE_MONITOR: Manifest = {
    "apiVersion": "monitoring.coreos.com/v1",
    "kind": "ServiceMonitor",
    "metadata": {"name": "intake", "labels": {"app.kubernetes.io/name": "intake"}},
    "spec": {
        "selector": {"matchLabels": {"app.kubernetes.io/name": "intake"}},
        "endpoints": [{"port": "http", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}],
    },
}


def test_a_service_monitor_is_validated_against_its_crd(rendered: dict[str, Objects]) -> None:
    assert broken(rendered, "dev", lambda objects: objects.append(copy.deepcopy(SERVICE_MONITOR))) == []

    def typo(objects: Objects) -> None:
        monitor = copy.deepcopy(SERVICE_MONITOR)
        monitor["spec"]["endpoints"][0]["intervall"] = monitor["spec"]["endpoints"][0].pop("interval")
        objects.append(monitor)

    assert broken(rendered, "dev", typo) == [
        "ServiceMonitor/intake: invalid for its CRD "
        "(k8s/crds/prometheus-operator/monitoring.coreos.com_servicemonitors.yaml) "
        "at spec.endpoints.0.intervall: unknown field"
    ]


def test_a_custom_resource_without_a_vendored_crd_fails(rendered: dict[str, Objects]) -> None:
    def change(objects: Objects) -> None:
        objects.append({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {}})

    errors = broken(rendered, "dev", change)
    assert any(
        e.startswith("Widget/w: no Kubernetes 1.31.0 schema and no vendored CRD for example.com/v1") for e in errors
    )


def test_a_root_or_writable_container_fails(rendered: dict[str, Objects]) -> None:
    def change(objects: Objects) -> None:
        container(objects, "Deployment", "registry")["securityContext"]["readOnlyRootFilesystem"] = False

    errors = broken(rendered, "dev", change)
    assert any("Deployment/registry: container registry: readOnlyRootFilesystem" in error for error in errors)


def test_a_grace_period_under_the_shutdown_timeout_fails(rendered: dict[str, Objects]) -> None:
    def change(objects: Objects) -> None:
        find(objects, "StatefulSet", "enrichment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 30

    errors = broken(rendered, "dev", change)
    assert any("terminationGracePeriodSeconds 30 must exceed shutdown_timeout_s 30.0" in e for e in errors), errors


def test_notifier_egress_to_the_metadata_address_fails(rendered: dict[str, Objects]) -> None:
    def change(objects: Objects) -> None:
        rule = find(objects, "NetworkPolicy", "webhook-egress")["spec"]["egress"][2]
        rule["to"][0]["ipBlock"]["except"].remove("169.254.0.0/16")

    errors = broken(rendered, "production", change)
    assert (
        "NetworkPolicy/webhook-egress: egress to 0.0.0.0/0 lets the intake and notifier reach 169.254.169.254/32"
        in errors
    )


def test_intake_which_pings_webhooks_has_its_egress_limited_too(rendered: dict[str, Objects]) -> None:
    def notifier_only(objects: Objects) -> None:
        selector = find(objects, "NetworkPolicy", "webhook-egress")["spec"]["podSelector"]
        selector["matchExpressions"][0]["values"] = ["notifier"]

    errors = broken(rendered, "dev", notifier_only)
    assert "NetworkPolicy: none limits the intake's egress" in errors, errors


def test_public_ingress_to_another_service_fails(rendered: dict[str, Objects]) -> None:
    def change(objects: Objects) -> None:
        selector = find(objects, "NetworkPolicy", "public-ingress")["spec"]["podSelector"]
        selector["matchExpressions"][0]["values"].append("registry")

    errors = broken(rendered, "dev", change)
    assert any("ingress from anywhere to pods other than intake, ops" in error for error in errors), errors


def test_an_image_that_is_not_the_services_dockerfile_target_fails(rendered: dict[str, Objects]) -> None:
    def python_for_inference(objects: Objects) -> None:
        container(objects, "StatefulSet", "inference")["image"] = "kafka-pipeline/python:latest"

    def unknown_image(objects: Objects) -> None:
        container(objects, "Deployment", "intake")["image"] = "kafka-pipeline/intake:latest"

    assert any("inference" in e and "image" in e for e in broken(rendered, "dev", python_for_inference))
    assert any("Dockerfile targets" in e for e in broken(rendered, "production", unknown_image))
