"""`reelhouse recommend`: a known user's top N from the latest run, or a new user's top N
folded in against the latest run's movie factors without retraining. Both answer from the
same in-memory model as `reelhouse api` (served_model.py), so the command line and HTTP give
the same list for the same input; no Spark is started.
"""

from __future__ import annotations

import math
from pathlib import Path

from pipelines import progress, served_model
from pipelines.errors import ReelhouseError
from pipelines.settings import Settings

MAX_FILE_RATINGS = served_model.MAX_FOLD_IN_RATINGS


def _check_top_n(top_n) -> int:
    if isinstance(top_n, bool) or not isinstance(top_n, int) or not 1 <= top_n <= 1000:
        raise ReelhouseError(f"--top-n must be a whole number from 1 to 1000, got {top_n!r}.")
    return top_n


def _ranked(items: list[dict]) -> list[dict]:
    return [{"rank": rank, **item} for rank, item in enumerate(items, start=1)]


def for_user(settings: Settings, user_id: int, top_n: int | None = None) -> list[dict]:
    """The user's top N from the latest run, with titles, years and genres, best first."""
    if isinstance(user_id, bool) or not isinstance(user_id, int):
        raise ReelhouseError(f"--user takes a whole-number user id, got {user_id!r}.")
    model = served_model.load(settings)
    top_n = model.params["top_n"] if top_n is None else _check_top_n(top_n)
    items, _ = model.for_user(user_id, top_n)
    return _ranked(items)


def fold_in(settings: Settings, ratings: list[tuple[int, float]], top_n: int = 10) -> list[dict]:
    """Top N movies for a new user with these ratings, never a movie the user rated, each
    with the rated movie that adds most to its score ("because")."""
    top_n = _check_top_n(top_n)
    items, left_out = served_model.load(settings).fold_in(ratings, top_n)
    if left_out:
        progress.say(f"{len(left_out)} of the rated movies had no train ratings, so the model "
                     "has no factors for them: they were left out")
    return _ranked(items)


# --- a new user's ratings file ---------------------------------------------------------------

def read_ratings_file(path: Path) -> list[tuple[int, float]]:
    """A new user's ratings: CSV lines `movie_id,rating`, an optional header line, blank
    lines and #-comments skipped. Any other line is an error naming the line."""
    path = Path(path)
    if not path.is_file():
        raise ReelhouseError(f"{path} is not a file: pass a CSV of movie_id,rating lines.")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ReelhouseError(f"{path} is not UTF-8 text: save it as a CSV of movie_id,rating "
                             "lines.") from exc
    ratings: dict[int, float] = {}
    seen_data = False
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        fields = [f.strip().strip('"') for f in stripped.split(",")]
        if not seen_data and not _is_number(fields[0]):
            seen_data = True  # a header: whatever its names, the columns are movie_id,rating
            continue
        seen_data = True
        where = f"line {number} of {path.name}"
        if len(fields) != 2:
            raise ReelhouseError(f"{where} has {len(fields)} fields, expected movie_id,rating: "
                                 f"{stripped[:80]!r}.")
        movie_text, rating_text = fields
        if not (movie_text.isascii() and movie_text.isdigit()) \
                or not 0 < int(movie_text) < 2**31:
            raise ReelhouseError(f"{where}: movie id {movie_text!r} is not a positive whole "
                                 "number.")
        if not _is_number(rating_text):
            raise ReelhouseError(f"{where}: rating {rating_text!r} is not a number.")
        movie_id, rating = int(movie_text), float(rating_text)
        if movie_id in ratings:
            raise ReelhouseError(f"{where}: movie {movie_id} is rated twice; keep one line.")
        ratings[movie_id] = rating
        if len(ratings) > MAX_FILE_RATINGS:
            raise ReelhouseError(f"{path.name} has more than {MAX_FILE_RATINGS:,} ratings.")
    if not ratings:
        raise ReelhouseError(f"{path.name} has no ratings: write one movie_id,rating per line.")
    return sorted(ratings.items())


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def format_listing(items: list[dict]) -> str:
    """Recommendations as a person reads them: rank, title (year), genres, score, reason."""
    lines = []
    for item in items:
        year = f" ({item['year']})" if item.get("year") is not None else ""
        genres = ", ".join(item.get("genres") or [])
        note = " [most rated pick]" if item.get("source") == "most_rated" else ""
        if item.get("because"):
            note += f"  because you rated {item['because']['title']}"
        lines.append(f"{item['rank']:>3}. {item['title']}{year}  —  {genres or 'no genres'}  "
                     f"(score {item['score']:.2f}, movie {item['movie_id']}){note}")
    return "\n".join(lines)
