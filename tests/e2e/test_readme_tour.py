"""The README's five-minute tour, run as written against the whole stack (``pipeline up``).

Each tour block is a fenced ``bash`` block right after a ``<!-- tour: <name> -->`` marker in the README's
"A five-minute tour" section. The README speaks of ``make up``'s ports and of ``.venv/bin/`` under the repository
root; before a block runs, ``README_TO_STACK`` rewrites exactly those to this stack's. The blocks run one after
another in one folder, each with ``bash -euo pipefail``; the shell variables a block sets (``KEY``, ``SECRET``,
``HOOK_PID``, ...) are handed to the next, as in one terminal. Each block's check gets its stdout and its stderr
(where ``pipeline dlq replay`` prints its plan and outcome)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import REPO, free_port

pytestmark = pytest.mark.e2e

TOUR_HEADING = "## A five-minute tour"
TOUR_BLOCK = re.compile(r"<!-- tour: ([a-z-]+) -->\n```bash\n(.*?)\n```", re.S)
README_INTAKE, README_OPS, README_HOOK_PORT = "127.0.0.1:8000", "127.0.0.1:8010", "8099"


def tour_blocks() -> dict[str, str]:
    """The tour's blocks by name, in README order."""
    readme = (REPO / "README.md").read_text()
    section = readme.split(TOUR_HEADING, 1)[1].split("\n## ", 1)[0]
    return dict(TOUR_BLOCK.findall(section))


def readme_to_stack(block: str, stack: dict[str, str], hook_port: int) -> str:
    """The block as it reads against this stack: its intake and ops ports, a free port for the tour's receiver,
    and the repository's virtual environment by its absolute path (the blocks run in a folder of their own)."""
    return (
        block.replace(README_INTAKE, f"127.0.0.1:{stack['INTAKE_PORT']}")
        .replace(README_OPS, f"127.0.0.1:{stack['OPS_PORT']}")
        .replace(README_HOOK_PORT, str(hook_port))
        .replace(".venv/bin/", f"{REPO / '.venv' / 'bin'}/")
    )


def json_lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def key_printed(out: str, err: str, env: dict[str, str]) -> None:
    assert env.get("KEY"), "pipeline keys create printed no key"


def subscription_created(out: str, err: str, env: dict[str, str]) -> None:
    assert out.split() == ["201"], out
    assert env["SECRET"].startswith("whsec_") and env.get("HOOK_PID")


def publish_accepted(out: str, err: str, env: dict[str, str]) -> None:
    assert out.splitlines()[-1] == "202", out
    assert json_lines(out)[0]["status"] == "accepted" and json_lines(out)[0]["event_id"] == "t-1", out


def delivered_and_verified(out: str, err: str, env: dict[str, str]) -> None:
    assert json_lines(out)[0]["status"] == "delivered", out
    assert re.search(r"^verified t-1 \w+$", out, re.M), out


def dead_lettered(out: str, err: str, env: dict[str, str]) -> None:
    assert out.splitlines()[0] == "202", out
    status = json_lines(out)[0]
    assert status["status"] == "failed", out
    assert status["error"]["service"] == "enrichment" and status["error"]["category"] == "validation", out


def replayed(out: str, err: str, env: dict[str, str]) -> None:
    summary, run = json_lines(out)
    assert summary == {"total": 1, "by_category": {"validation": 1}}, out
    assert run == {"state": "finished", "outcome": "done"}, out


def refused_then_planned(out: str, err: str, env: dict[str, str]) -> None:
    """The record failed again after the replay; a plain second replay is refused with exit code 3 (the first
    dead letter replayed before, the second left out as failed again), and ``--include-refailed`` plans both, of
    which the ledger would skip the first."""
    summary = json_lines(out)
    assert summary == [{"total": 2, "replayed": 1, "refailed": 1}], f"{out}\n--- stderr\n{err}"
    assert [line for line in out.splitlines() if not line.startswith("{")] == ["exit 3"], f"{out}\n--- stderr\n{err}"
    refused = re.search(
        r"^refused rp-\w+: selected 1, replayed 0, skipped 1 \(replayed before\), failed 0, "
        r"left out 1 \(failed again after replay\) — refused: .*--include-refailed",
        err,
        re.M,
    )
    assert refused, err
    plain, included = err[: refused.end()], err[refused.end() :]
    assert re.search(r"^enrichment\.dlq → enrichment\.replay: 1 selected \(validation 1\)$", plain, re.M), err
    assert re.search(r"^left out: 1 failed again after replay: 1 after 1 time \(--include-refailed", plain, re.M), err
    assert re.search(r"^enrichment\.dlq → enrichment\.replay: 2 selected \(validation 2\)$", included, re.M), err
    assert re.search(
        r"^dry_run rp-\w+: selected 2, replayed 0, skipped 1 \(replayed before\), failed 0$", included, re.M
    ), err
    assert "left out" not in included, err


# What each block must print, by name; the README's comments say the same.
EXPECTED: dict[str, Callable[[str, str, dict[str, str]], None]] = {
    "key": key_printed,
    "subscribe": subscription_created,
    "publish": publish_accepted,
    "status": delivered_and_verified,
    "dead-letter": dead_lettered,
    "replay": replayed,
    "refailed": refused_then_planned,
}


def run_block(block: str, env: dict[str, str], cwd: Path) -> tuple[str, str, dict[str, str]]:
    """Run one block; its stdout and stderr, and the environment the next block starts with (what this one set)."""
    state = cwd / ".tour-env"
    # set -a exports every variable the block assigns, so `env -0` hands them on.
    script = f"set -a\n{block}\nenv -0 > {state}\n"
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"{block}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    after = dict(item.split("=", 1) for item in state.read_text().split("\0") if "=" in item)
    return done.stdout, done.stderr, after


@pytest.mark.timeout(900)
def test_every_tour_block_runs_against_the_stack_and_prints_what_the_readme_says(
    stack: dict[str, str], tmp_path: Path
) -> None:
    blocks = tour_blocks()
    assert list(blocks) == list(EXPECTED), "the README's tour blocks and this test's expectations differ"
    hook_port = free_port()
    env = dict(stack)
    try:
        for name, block in blocks.items():
            out, err, env = run_block(readme_to_stack(block, stack, hook_port), env, tmp_path)
            EXPECTED[name](out, err, env)
    finally:
        if env.get("HOOK_PID"):
            with contextlib.suppress(ProcessLookupError):  # the last block stopped it
                os.kill(int(env["HOOK_PID"]), signal.SIGTERM)
