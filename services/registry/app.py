"""The embedded schema registry: the Confluent Schema Registry REST subset that confluent-kafka uses."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from confluent_kafka import KafkaException
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastavro import parse_schema
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.registry.compat import LEVELS, compatibility_problems
from services.registry.settings import RegistrySettings
from services.registry.store import KafkaBackedStore, RegistryState, SubjectVersion, canonical
from shared.health import KafkaCheck, health_router
from shared.kafka import DeliveryFailed
from shared.service import serve

log = logging.getLogger(__name__)
SCHEMA_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class RegistryError(Exception):
    """An error answered in Confluent's body format: ``{"error_code", "message"}``."""

    def __init__(self, status: int, error_code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message


def _subject_not_found(subject: str) -> RegistryError:
    return RegistryError(404, 40401, f"Subject '{subject}' not found.")


def _error(status: int, code: int, message: str) -> JSONResponse:
    return JSONResponse({"error_code": code, "message": message}, status_code=status, media_type=SCHEMA_CONTENT_TYPE)


class Registry:
    """The registry's operations over a ``KafkaBackedStore``."""

    def __init__(self, store: KafkaBackedStore, default_compatibility: str) -> None:
        self.store = store
        self.default_compatibility = default_compatibility

    @property
    def state(self) -> RegistryState:
        if not self.store.loaded.is_set():
            raise RegistryError(503, 50301, "Schema registry is still loading its state from Kafka")
        return self.store.state

    def versions(self, subject: str) -> list[SubjectVersion]:
        versions = self.state.subjects.get(subject)
        if not versions:
            raise _subject_not_found(subject)
        return versions

    def version(self, subject: str, version: str) -> SubjectVersion:
        versions = self.versions(subject)
        if version in ("latest", "-1"):
            return versions[-1]
        try:
            number = int(version)
        except ValueError:
            number = 0
        if number < 1:
            raise RegistryError(
                422,
                42202,
                f"The specified version '{version}' is not a valid version id. "
                'Allowed values are between [1, 2^31-1] and the string "latest"',
            )
        for entry in versions:
            if entry.version == number:
                return entry
        raise RegistryError(404, 40402, f"Version {number} not found.")

    def compatibility(self, subject: str | None) -> str:
        state = self.state
        if subject and subject in state.config:
            return state.config[subject]
        return state.config.get("", self.default_compatibility)

    def register(self, subject: str, body: dict[str, Any]) -> dict[str, Any]:
        text, parsed = _parse_request_schema(body)
        with self.store.lock:
            state = self.state
            key = canonical(parsed)
            for entry in state.subjects.get(subject, []):
                if canonical(json.loads(entry.schema)) == key:
                    return {"id": entry.schema_id, "subject": subject, "version": entry.version}
            existing = [json.loads(v.schema) for v in state.subjects.get(subject, [])]
            problems = compatibility_problems(self.compatibility(subject), parsed, existing)
            if problems:
                raise RegistryError(
                    409,
                    409,
                    f'Schema being registered is incompatible with an earlier schema for subject "{subject}", '
                    f"details: {problems}",
                )
            schema_id = state.ids_by_canonical.get(key) or state.next_id()
            version = max((v.version for v in state.subjects.get(subject, [])), default=0) + 1
            record = {
                "subject": subject,
                "version": version,
                "id": schema_id,
                "schema": text,
                "deleted": False,
            }
            self._write({"keytype": "SCHEMA", "subject": subject, "version": version, "magic": 1}, record)
        return {"id": schema_id, "subject": subject, "version": version}

    def lookup(self, subject: str, body: dict[str, Any]) -> dict[str, Any]:
        _text, parsed = _parse_request_schema(body)
        key = canonical(parsed)
        for entry in self.versions(subject):
            if canonical(json.loads(entry.schema)) == key:
                return entry.as_response()
        raise RegistryError(404, 40403, "Schema not found")

    def check(self, subject: str, version: str, body: dict[str, Any], verbose: bool) -> dict[str, Any]:
        _text, parsed = _parse_request_schema(body)
        entry = self.version(subject, version)
        level = self.compatibility(subject)
        base = level.removesuffix("_TRANSITIVE")
        # Checking against one named version applies the level's direction to that version alone.
        problems = compatibility_problems(base, parsed, [json.loads(entry.schema)])
        answer: dict[str, Any] = {"is_compatible": not problems}
        if verbose:
            answer["messages"] = problems
        return answer

    def set_config(self, subject: str | None, body: dict[str, Any]) -> dict[str, str]:
        level = str(body.get("compatibility") or body.get("compatibilityLevel") or "").upper()
        if level not in LEVELS:
            raise RegistryError(422, 42203, f"Invalid compatibility level. Valid values are {sorted(LEVELS)}")
        with self.store.lock:
            self.state  # noqa: B018 - raises while loading
            self._write({"keytype": "CONFIG", "subject": subject, "magic": 0}, {"compatibilityLevel": level})
        return {"compatibility": level}

    def _write(self, key: dict[str, Any], value: dict[str, Any]) -> None:
        try:
            self.store.write(key, value)
        except (KafkaException, DeliveryFailed) as exc:
            # The write may still land later; reload from the log so ids never collide.
            self.store.loaded.clear()
            threading.Thread(target=self.store.load_until_done, daemon=True, name="registry-reload").start()
            raise RegistryError(500, 50001, f"Error in the backend data store: {exc}") from exc


def _parse_request_schema(body: dict[str, Any]) -> tuple[str, Any]:
    schema_type = body.get("schemaType", "AVRO") or "AVRO"
    if schema_type != "AVRO":
        raise RegistryError(422, 42201, f"Invalid schema: schemaType {schema_type} is not supported, only AVRO")
    if body.get("references"):
        raise RegistryError(422, 42201, "Invalid schema: schema references are not supported")
    text = body.get("schema")
    if not isinstance(text, str):
        raise RegistryError(422, 42201, "Invalid schema: the body needs a 'schema' string")
    try:
        parsed = json.loads(text)
        parse_schema(parsed, _write_hint=False, _force=True)
    except Exception as exc:
        raise RegistryError(422, 42201, f"Invalid schema: {type(exc).__name__}: {exc}") from exc
    return text, parsed


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw or b"{}")
    except ValueError as exc:
        raise RegistryError(422, 42201, f"Invalid request body: not JSON ({exc})") from exc
    if not isinstance(body, dict):
        raise RegistryError(422, 42201, "Invalid request body: expected a JSON object")
    return body


def _flag(value: str | None) -> bool:
    return (value or "").lower() == "true"


def create_app(settings: RegistrySettings, store: KafkaBackedStore | None = None) -> FastAPI:
    """Build the registry app; the store loads in the background so the process answers at once."""
    store = store or KafkaBackedStore(settings.pipeline.kafka, settings.topic, settings.write_timeout_s)
    registry = Registry(store, settings.default_compatibility)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        threading.Thread(target=store.load_until_done, daemon=True, name="registry-load").start()
        yield

    app = FastAPI(title="schema registry", lifespan=lifespan, docs_url=None, redoc_url=None)

    async def loaded() -> None:
        if not store.loaded.is_set():
            raise RuntimeError(f"still loading {settings.topic}")

    app.include_router(
        health_router(
            "registry", {"kafka": KafkaCheck(settings.pipeline.kafka.for_client("registry")), "state": loaded}
        )
    )

    @app.exception_handler(RegistryError)
    async def registry_error(_request: Request, exc: RegistryError) -> JSONResponse:
        return _error(exc.status, exc.error_code, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, exc.status_code, f"HTTP {exc.status_code} {exc.detail}")

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, 422, f"Invalid request: {exc.errors()}")

    @app.get("/")
    async def root() -> dict[str, str]:
        return {}

    @app.get("/subjects")
    def subjects() -> list[str]:
        return sorted(registry.state.subjects)

    @app.get("/subjects/{subject}/versions")
    def versions(subject: str) -> list[int]:
        return [v.version for v in registry.versions(subject)]

    @app.get("/subjects/{subject}/versions/{version}")
    def version(subject: str, version: str) -> dict[str, Any]:
        return registry.version(subject, version).as_response()

    @app.get("/subjects/{subject}/versions/{version}/schema")
    def version_schema(subject: str, version: str) -> Any:
        return json.loads(registry.version(subject, version).schema)

    @app.post("/subjects/{subject}/versions")
    async def register(subject: str, request: Request) -> dict[str, Any]:
        body = await _json_body(request)
        return registry.register(subject, body)

    @app.post("/subjects/{subject}")
    async def lookup(subject: str, request: Request) -> dict[str, Any]:
        body = await _json_body(request)
        return registry.lookup(subject, body)

    @app.get("/schemas/ids/{schema_id}")
    def schema_by_id(schema_id: int) -> dict[str, Any]:
        text = registry.state.schemas.get(schema_id)
        if text is None:
            raise RegistryError(404, 40403, f"Schema {schema_id} not found")
        return {"schema": text}

    @app.get("/schemas/ids/{schema_id}/subjects")
    def subjects_by_id(schema_id: int) -> list[str]:
        state = registry.state
        if schema_id not in state.schemas:
            raise RegistryError(404, 40403, f"Schema {schema_id} not found")
        return sorted(s for s, vs in state.subjects.items() if any(v.schema_id == schema_id for v in vs))

    @app.get("/schemas/ids/{schema_id}/versions")
    def versions_by_id(schema_id: int) -> list[dict[str, Any]]:
        state = registry.state
        if schema_id not in state.schemas:
            raise RegistryError(404, 40403, f"Schema {schema_id} not found")
        return [
            {"subject": v.subject, "version": v.version}
            for vs in state.subjects.values()
            for v in vs
            if v.schema_id == schema_id
        ]

    @app.post("/compatibility/subjects/{subject}/versions/{version}")
    async def compatibility(subject: str, version: str, request: Request) -> dict[str, Any]:
        body = await _json_body(request)
        return registry.check(subject, version, body, _flag(request.query_params.get("verbose")))

    @app.get("/config")
    def get_config() -> dict[str, str]:
        return {"compatibilityLevel": registry.compatibility(None)}

    @app.put("/config")
    async def put_config(request: Request) -> dict[str, str]:
        return registry.set_config(None, await _json_body(request))

    @app.get("/config/{subject}")
    def get_subject_config(subject: str, request: Request) -> dict[str, str]:
        state = registry.state
        if subject in state.config:
            return {"compatibilityLevel": state.config[subject]}
        if _flag(request.query_params.get("defaultToGlobal")):
            return {"compatibilityLevel": registry.compatibility(None)}
        raise RegistryError(404, 40408, f"Subject '{subject}' does not have subject-level compatibility configured")

    @app.put("/config/{subject}")
    async def put_subject_config(subject: str, request: Request) -> dict[str, str]:
        return registry.set_config(subject, await _json_body(request))

    return app


def main() -> None:
    settings = RegistrySettings()
    serve("registry", create_app(settings), settings)


if __name__ == "__main__":
    main()
