"""Ids of runs: a `reelhouse run` (pipeline_runs), a training run (model_runs) and a tune
(model_trials) are all named the same way."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime


def new_run_id(started_at: datetime | None = None) -> str:
    """'<UTC start, yyyymmddThhmmssZ>-<6 random hex digits>': sortable by time, unique without
    coordination. `started_at` (default now) is the time the run records as its start, so
    the id and that column agree."""
    started_at = (started_at or datetime.now(UTC)).astimezone(UTC)
    return f"{started_at:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
