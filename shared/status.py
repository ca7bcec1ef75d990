"""The event status record's Redis layout, shared by its writer (status), intake and inference (which reads
which model version answered, so that a replay of an answered event adds no second result)."""

from __future__ import annotations

import json

RESULT_FIELD = "result"


def status_key(tenant: str, event_id: str) -> str:
    """``status:<tenant>:<event_id>``: a hash with one field per stage reached, ``status``, ``result``, ..."""
    return f"status:{tenant}:{event_id}"


def answered_version(result: bytes | str | None) -> str | None:
    """The model version in a status record's ``result`` field (JSON), or None when there is none."""
    if not result:
        return None
    try:
        model = json.loads(result).get("model") or {}
    except (ValueError, AttributeError):
        return None
    version = model.get("version") if isinstance(model, dict) else None
    return version if isinstance(version, str) else None
