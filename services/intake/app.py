"""intake API: wiring and the process entry point."""

from __future__ import annotations

from fastapi import FastAPI

from services.intake.settings import IntakeSettings
from shared.service import serve, shell_app


def create_app(settings: IntakeSettings) -> FastAPI:
    return shell_app("intake", settings, kafka=True, redis=True, registry=True)


def main() -> None:
    settings = IntakeSettings()
    serve("intake", create_app(settings), settings)


if __name__ == "__main__":
    main()
