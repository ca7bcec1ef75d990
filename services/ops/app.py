"""ops API: wiring and the process entry point."""

from __future__ import annotations

from fastapi import FastAPI

from services.ops.settings import OpsSettings
from shared.service import serve, shell_app


def create_app(settings: OpsSettings) -> FastAPI:
    return shell_app("ops", settings, kafka=True, redis=True)


def main() -> None:
    settings = OpsSettings()
    serve("ops", create_app(settings), settings)


if __name__ == "__main__":
    main()
