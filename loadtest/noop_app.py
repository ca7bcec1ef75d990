"""The baseline for the intake benchmark: a FastAPI endpoint that parses the same JSON and does nothing else,
served with the same uvicorn settings (uvloop, httptools, JSON logs)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic_settings import SettingsConfigDict

from shared.service import serve
from shared.settings import ServiceSettings


class NoopSettings(ServiceSettings):
    """Read from the same variables as intake (``INTAKE_PORT``), so both listen the way the benchmark says."""

    model_config = SettingsConfigDict(env_prefix="INTAKE_", extra="ignore")

    port: int = 8000


def create_app() -> FastAPI:
    app = FastAPI(title="no-op")

    @app.post("/v1/events")
    async def accept(request: Request) -> Any:
        body = await request.json()
        return JSONResponse({"event_id": body.get("event_id"), "status": "accepted"}, status_code=202)

    return app


def main() -> None:
    serve("noop", create_app(), NoopSettings())


if __name__ == "__main__":
    main()
