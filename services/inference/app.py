"""inference worker (health and metrics only until its processing lands): wiring and the process entry point."""

from __future__ import annotations

from fastapi import FastAPI

from services.inference.settings import InferenceSettings
from shared.service import serve, shell_app


def create_app(settings: InferenceSettings) -> FastAPI:
    return shell_app("inference", settings, kafka=True, registry=True)


def main() -> None:
    settings = InferenceSettings()
    serve("inference", create_app(settings), settings)


if __name__ == "__main__":
    main()
