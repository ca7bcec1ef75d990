"""The body limit every HTTP service sits behind: a 413 problem before the app parses a body that is too large."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from shared.http import BodyLimit
from shared.problems import install


def echo_app() -> FastAPI:
    app = FastAPI()
    install(app)

    @app.post("/small")
    @app.post("/large")
    async def length(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    return app


def chunks(count: int, size: int) -> Iterator[bytes]:
    for _ in range(count):
        yield b"x" * size


def test_a_declared_length_over_the_limit_is_a_413_problem() -> None:
    client = TestClient(BodyLimit(echo_app(), 100))
    answer = client.post("/small", content=b"x" * 101)
    assert answer.status_code == 413 and answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["detail"] == "the body is over the 100-byte limit"


def test_a_streamed_body_is_refused_with_413_once_it_passes_the_limit() -> None:
    client = TestClient(BodyLimit(echo_app(), 100))
    answer = client.post("/small", content=chunks(10, 50))
    assert answer.status_code == 413 and "100-byte limit" in answer.json()["detail"]


def test_a_path_of_its_own_gets_its_own_limit() -> None:
    client = TestClient(BodyLimit(echo_app(), 100, {"/large": 1000}))
    assert client.post("/large", content=b"x" * 500).json() == {"bytes": 500}
    assert client.post("/large", content=chunks(5, 100)).json() == {"bytes": 500}
    assert client.post("/small", content=b"x" * 500).status_code == 413
