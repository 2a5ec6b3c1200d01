"""What a user sees while work runs: one line per step on stderr, with its time."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager


def say(message: str) -> None:
    print(f"reelhouse: {message}", file=sys.stderr, flush=True)


@contextmanager
def step(label: str):
    """Announce a step, then report how long it took; `info` collects a short result line."""
    say(f"{label} ...")
    started = time.monotonic()
    info: dict[str, str] = {}
    yield info
    detail = f", {info['result']}" if info.get("result") else ""
    say(f"{label} done ({time.monotonic() - started:.1f}s{detail})")


def bar(done: float, total: float | None, label: str, width: int = 30) -> None:
    """A progress bar redrawn in place on a terminal; plain occasional lines otherwise."""
    if total:
        filled = int(width * min(done / total, 1.0))
        text = f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {100 * done / total:5.1f}%"
    else:
        text = f"\r{label} {done:,.0f}"
    if sys.stderr.isatty():
        sys.stderr.write(text)
        if total and done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()
    elif total and done >= total:
        print(text.strip(), file=sys.stderr, flush=True)
