"""notifier worker (health and metrics only until its processing lands): wiring and the process entry point."""

from __future__ import annotations

from fastapi import FastAPI

from services.notifier.settings import NotifierSettings
from shared.service import serve, shell_app


def create_app(settings: NotifierSettings) -> FastAPI:
    return shell_app("notifier", settings, kafka=True, redis=True, registry=True)


def main() -> None:
    settings = NotifierSettings()
    serve("notifier", create_app(settings), settings)


if __name__ == "__main__":
    main()
