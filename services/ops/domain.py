"""ops' rules, without I/O: what a replay request says, and which tenants' dead letters a key may see."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from shared.analytics import StatsTotals, WindowStats
from shared.auth import ApiKey
from shared.replay.records import DlqFilter


class ReplayRequest(BaseModel):
    """A replay (or dry run) of the dead letters a filter selects."""

    model_config = ConfigDict(extra="forbid")

    filter: DlqFilter = Field(default_factory=DlqFilter)
    dry_run: bool = False
    rate: float | None = Field(default=None, gt=0, description="Records per second, at most.")
    limit: int | None = Field(default=None, ge=1, description="At most this many (the first, by partition).")
    keep_headers: bool = False
    force: bool = False
    include_refailed: bool = Field(
        default=False, description="Also take records that failed again after a replay (left out by default)."
    )


class OtherTenant(Exception):
    """A key without ``admin`` asked for another tenant's records."""


def may_see(key: ApiKey, tenant: str | None) -> bool:
    """An admin key sees every tenant's records; any other key only its own tenant's."""
    return "admin" in key.scopes or tenant == key.tenant


def scoped(where: DlqFilter, key: ApiKey) -> DlqFilter:
    """The filter as this key may use it: its own tenant's records only, unless it is an admin key."""
    if "admin" in key.scopes:
        return where
    if where.tenant is not None and where.tenant != key.tenant:
        raise OtherTenant(f"this key reads only tenant {key.tenant}'s records")
    return where.model_copy(update={"tenant": key.tenant})


# /v1/stats: how many windows by default, and at most (2 h of 1m windows, 2 days of 1h ones are kept).
DEFAULT_WINDOWS: dict[str, int] = {"1m": 60, "1h": 24}
MAX_WINDOWS = 120


class TenantStats(BaseModel):
    """``GET /v1/stats``: a tenant's recent windows, oldest first, and their totals with the derived rates."""

    tenant: str
    window: str
    windows: list[WindowStats]
    totals: StatsTotals
