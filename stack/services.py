"""Every service of the pipeline and its settings class, for the tools that handle them all alike."""

from __future__ import annotations

from services.analytics.settings import AnalyticsSettings
from services.enrichment.settings import EnrichmentSettings
from services.inference.settings import InferenceSettings
from services.intake.settings import IntakeSettings
from services.notifier.settings import NotifierSettings
from services.ops.settings import OpsSettings
from services.registry.settings import RegistrySettings
from services.status.settings import StatusSettings
from shared.settings import ConsumerServiceSettings, ServiceSettings

SERVICES: dict[str, type[ServiceSettings]] = {
    "registry": RegistrySettings,
    "intake": IntakeSettings,
    "ops": OpsSettings,
    "enrichment": EnrichmentSettings,
    "inference": InferenceSettings,
    "notifier": NotifierSettings,
    "status": StatusSettings,
    "analytics": AnalyticsSettings,
}


def port_of(service: str) -> int:
    """The port ``service`` listens on under this process's environment (``<PREFIX>_PORT`` or the default)."""
    settings = SERVICES[service]
    if issubclass(settings, ConsumerServiceSettings):
        # Only the port is read: an explicit instance keeps a production environment from refusing.
        return settings(instance=0).port
    return settings().port
