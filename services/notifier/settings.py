"""notifier settings: prefix ``NOTIFIER_``, nested blocks with ``__`` (``NOTIFIER_RUNTIME__MAX_BATCH_SIZE``)."""

from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from shared.settings import ConsumerServiceSettings
from shared.topics import EVENTS_INFERRED, NOTIFICATIONS_DELIVERED


class NotifierSettings(ConsumerServiceSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFIER_", extra="ignore")
    service: ClassVar[str] = "notifier"

    port: int = 9104
    input_topic: str = EVENTS_INFERRED
    output_topic: str = NOTIFICATIONS_DELIVERED
