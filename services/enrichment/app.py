"""enrichment worker (health and metrics only until its processing lands): wiring and the process entry point."""

from __future__ import annotations

from fastapi import FastAPI

from services.enrichment.settings import EnrichmentSettings
from shared.service import serve, shell_app


def create_app(settings: EnrichmentSettings) -> FastAPI:
    return shell_app("enrichment", settings, kafka=True, redis=True, registry=True)


def main() -> None:
    settings = EnrichmentSettings()
    serve("enrichment", create_app(settings), settings)


if __name__ == "__main__":
    main()
