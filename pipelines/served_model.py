"""The latest finished run's serving model, in memory: what `reelhouse api` and `reelhouse
recommend` answer from, read from the warehouse's Delta tables by delta-rs (the `deltalake`
package), with no JVM and no Spark job on the way.

A load reads the newest model_runs row and every table the run wrote at the version it
recorded (output_versions), so a train that is writing now, or was killed, is never half
seen; the movies, their statistics and the users come from the latest build.

Which rows the model may not recommend comes from `ratings_split`, the build's copy of every
rating: `ratings` itself uses deletion vectors (its MERGE marks changed rows instead of
rewriting files), a reader feature delta-rs 1.6 refuses ("The table has set these reader
features: {'deletionVectors'} but these are not yet supported by the deltalake reader");
ratings_split is rewritten whole by each build and has the same (user, movie) pairs.

Fold-in (a new user's list without retraining) solves the same regularised least-squares
problem ALS solves for every user in its last half-iteration, with the movie factors held
fixed:
    explicit: (QᵀQ + λ·n·I) p = Qᵀ (r − μ − b_movie − b_user)
    implicit: (YᵀY + Qᵀ(C − I)Q + λ·n·I) p = Qᵀ C·1    (Hu, Koren, Volinsky 2008)
Q holds the factors of the n movies the user rated, λ·n is Spark's scaled regularisation
(ALS-WR), C the confidences 1 + α·value. So a train user folded in with their own ratings
gets back (to float precision) the factors ALS gave them. Both are p = A⁻¹ Qᵀ w for a weight
w per rated movie, so a movie's score y·p is a sum of one term per rated movie,
(y A⁻¹ q_j) w_j: the largest term is the "because you rated" (Hu et al., section 5).
"""

from __future__ import annotations

import bisect
import json
import math
import re
import time
import unicodedata
from dataclasses import dataclass, field

import numpy as np

from pipelines import model_runs
from pipelines.errors import ReelhouseError, spark_message
from pipelines.settings import Settings

# A new user's ratings in one fold-in: more is not a person typing.
MAX_FOLD_IN_RATINGS = 1000


class NotFound(ReelhouseError):
    """A movie or user id the warehouse has never seen (HTTP 404)."""


class BadRequest(ReelhouseError):
    """A request the model cannot answer as asked (HTTP 422)."""


class Unavailable(ReelhouseError):
    """No model to serve: no warehouse, no finished run, or an unreadable table (HTTP 503)."""


# --- reading Delta tables with delta-rs -----------------------------------------------------

def delta_uri(settings: Settings, table: str) -> str:
    """Where delta-rs finds a table: a local path, or an object store URI (Hadoop's s3a://
    is delta-rs's s3://)."""
    location = settings.table_location(table)
    return "s3://" + location[len("s3a://"):] if location.startswith("s3a://") else location


def read_table(settings: Settings, table: str, columns: list[str], version: int | None = None):
    """Columns of a Delta table as a pyarrow Table, at `version` (None: the latest)."""
    from deltalake import DeltaTable
    from deltalake.exceptions import DeltaError, TableNotFoundError

    try:
        delta = DeltaTable(delta_uri(settings, table), version=version)
        return delta.to_pyarrow_table(columns=columns)
    except TableNotFoundError as exc:
        raise Unavailable(f"movielens.{table} is not in the warehouse {settings.warehouse}: run "
                          "`reelhouse run` first.") from exc
    except (DeltaError, OSError) as exc:
        raise Unavailable(f"movielens.{table} could not be read: "
                          f"{spark_message(exc, 200)}") from exc


def table_version(settings: Settings, table: str) -> int | None:
    """A table's latest Delta version (None: not there), from its log alone."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        return DeltaTable(delta_uri(settings, table)).version()
    except TableNotFoundError:
        return None


def latest_run(settings: Settings, version: int | None = None) -> dict:
    """The newest model_runs row (what model_runs.latest_run picks, in Spark) as a dict, as of
    `version` (None: the latest)."""
    if table_version(settings, model_runs.RUNS_TABLE) is None:
        raise Unavailable(f"No model has been trained in {settings.warehouse} yet: run "
                          "`reelhouse run` (or `reelhouse train`) first.")
    runs = read_table(settings, model_runs.RUNS_TABLE, None, version).to_pylist()
    if not runs:
        raise Unavailable("model_runs is empty: run `reelhouse train` first.")
    return max(runs, key=lambda run: (run["finished_at"], run["run_id"]))


def _matrix(column) -> np.ndarray:
    """A list<float> column of equal-length lists as an (n, rank) float64 matrix."""
    column = column.combine_chunks()
    flat = column.flatten().to_numpy(zero_copy_only=False).astype(np.float64)
    return flat.reshape(len(column), -1) if len(column) else flat.reshape(0, 0)


def _strings(column) -> np.ndarray:
    """A string column with few distinct values as an object array whose rows share one
    Python string per value (1.6M rows at 25M ratings: no 1.6M strings)."""
    encoded = column.combine_chunks().dictionary_encode()
    names = np.array(encoded.dictionary.to_pylist(), dtype=object)
    return names[encoded.indices.to_numpy(zero_copy_only=False)]


def _ints(column) -> np.ndarray:
    return column.to_numpy().astype(np.int64)


_NOT_WORD = re.compile(r"[\W_]+")


def search_key(text: str) -> str:
    """A title as search compares it: accents off, case folded, punctuation as spaces
    ("Amélie" finds "Amelie", "shawshank" finds "The Shawshank Redemption")."""
    text = text or ""
    if not text.isascii():  # most titles are ASCII and need no decomposition
        text = "".join(c for c in unicodedata.normalize("NFKD", text)
                       if not unicodedata.combining(c))
    return _NOT_WORD.sub(" ", text.casefold()).strip()


class TitleIndex:
    """Title search keys, most rated first (position = popularity rank). A title equal to the
    query, then titles starting with it (or with "the " and it), then any title holding every
    word: exact matches by a dict, prefixes by binary search in the sorted keys, the rest by
    str.find over all keys in one string, stopping once enough are found."""

    def __init__(self, movies: dict[int, dict]):
        ordered = sorted(movies.values(), key=lambda m: (-(m["num_ratings"] or 0), m["movie_id"]))
        self.keys = [search_key(m["title"]) for m in ordered]
        self.ids = [m["movie_id"] for m in ordered]
        self.text = "\n".join(self.keys)
        self.starts = np.cumsum([0] + [len(k) + 1 for k in self.keys[:-1]])
        self.exact: dict[str, list[int]] = {}
        for position, key in enumerate(self.keys):
            self.exact.setdefault(key, []).append(position)
        self.by_key = sorted(range(len(self.keys)), key=self.keys.__getitem__)
        self.sorted_keys = [self.keys[i] for i in self.by_key]

    def _prefixed(self, prefix: str) -> list[int]:
        low = bisect.bisect_left(self.sorted_keys, prefix)
        high = bisect.bisect_left(self.sorted_keys, prefix + "\U0010ffff")
        return self.by_key[low:high]

    def _holding(self, words: list[str], limit: int) -> list[int]:
        longest = max(words, key=len)
        found, at = [], self.text.find(longest)
        while at >= 0 and len(found) < limit:
            i = int(np.searchsorted(self.starts, at, side="right")) - 1
            if all(w in self.keys[i] for w in words):
                found.append(i)
            at = self.text.find(longest, self.starts[i] + len(self.keys[i]))
        return found

    def find(self, words: list[str], limit: int) -> list[int]:
        """Positions of the best `limit` titles for these words, best first."""
        phrase = " ".join(words)
        tiers = [self.exact.get(phrase, []),
                 sorted(self._prefixed(phrase) + self._prefixed("the " + phrase))[:limit * 2],
                 self._holding(words, limit * 3)]
        found: list[int] = []
        for tier in tiers:
            found += [i for i in tier if i not in found]
            if len(found) >= limit:
                break
        return found[:limit]


@dataclass
class Lists:
    """Ranked lists keyed by an id (a user's recommendations, a movie's similar movies):
    rows sorted by key then rank, with where each key's rows start."""

    keys: np.ndarray
    starts: np.ndarray
    items: np.ndarray
    scores: np.ndarray | None = None
    sources: np.ndarray | None = None  # a short string per row (few distinct: shared)

    @classmethod
    def from_columns(cls, keys, ranks, items, scores, sources=None) -> Lists:
        order = np.lexsort((ranks, keys))
        keys, items, scores = keys[order], items[order], scores[order]
        unique, starts = np.unique(keys, return_index=True)
        return cls(unique, np.append(starts, len(keys)), items, scores,
                   None if sources is None else sources[order])

    @classmethod
    def sets(cls, keys: np.ndarray, items: np.ndarray) -> Lists:
        """Each key's items, sorted (a user's rated movies): one sort of a 64-bit key, the
        cheapest way to group millions of pairs; a stable sort, which is near linear on
        rows that come mostly in key order, as a build writes them."""
        combined = keys.astype(np.int64)
        combined <<= 32
        combined |= items
        combined.sort(kind="stable")
        keys = (combined >> 32).astype(np.int32)
        starts = np.flatnonzero(keys[1:] != keys[:-1]) + 1
        starts = np.concatenate(([0], starts)) if len(keys) else starts
        combined &= 0xFFFFFFFF
        return cls(keys[starts], np.append(starts, len(keys)), combined.astype(np.int32))

    def get(self, key: int):
        """(items, scores, sources) of one key, best first, or None if the key has none."""
        i = int(np.searchsorted(self.keys, key))
        if i == len(self.keys) or self.keys[i] != key:
            return None
        a, b = self.starts[i], self.starts[i + 1]
        return (self.items[a:b], None if self.scores is None else self.scores[a:b],
                None if self.sources is None else self.sources[a:b].tolist())


@dataclass
class Factors:
    """One model's factor table: ids sorted, their factor rows, biases and train counts."""

    ids: np.ndarray
    matrix: np.ndarray
    bias: np.ndarray
    num_ratings: np.ndarray

    @classmethod
    def read(cls, settings: Settings, table: str, version: int) -> Factors:
        data = read_table(settings, table, ["id", "factors", "bias", "num_ratings"], version)
        ids = _ints(data["id"])
        order = np.argsort(ids)
        return cls(ids[order], _matrix(data["factors"])[order],
                   data["bias"].to_numpy()[order].astype(np.float64),
                   _ints(data["num_ratings"])[order])

    def rows(self, ids) -> np.ndarray:
        """Row index of each id, -1 where the id has no factors."""
        ids = np.asarray(ids, dtype=np.int64)
        return np.where(_member(self.ids, ids), np.searchsorted(self.ids, ids), -1)


@dataclass
class ServedModel:
    """Everything one served run answers with. Built once per run, never changed after:
    a reload builds a new one and swaps the reference, so a request sees one run only."""

    run: dict
    params: dict  # the list model's (what serves lists and fold-in)
    movies: dict[int, dict]  # movie_id -> title, year, genres and rating statistics
    titles: TitleIndex
    list_factors: Factors  # movie factors of the list model
    movie_gram: np.ndarray  # YᵀY over every movie (implicit fold-in)
    # What a list may name (min_movie_ratings), laid out for one matrix-vector product per
    # fold-in: ids (sorted), float32 factors (contiguous), biases.
    candidate_ids: np.ndarray
    candidate_factors: np.ndarray
    candidate_bias: np.ndarray
    popular: np.ndarray  # movie ids by serving-fit ratings, most first: the fallback list
    recommendations: Lists
    similar: Lists
    rating_users: Factors
    rating_movies: Factors
    rated: Lists  # each user's rated movie ids (scores unused)
    known_users: np.ndarray  # every user id the warehouse has (sorted)
    metrics: dict = field(default_factory=dict)
    loaded_seconds: float = 0.0

    @property
    def run_id(self) -> str:
        return self.run["run_id"]

    @property
    def scale(self) -> tuple[float, float]:
        return float(self.run["rating_scale_min"]), float(self.run["rating_scale_max"])

    # --- movies ----------------------------------------------------------------------------

    def movie(self, movie_id: int) -> dict:
        info = self.movies.get(movie_id)
        if info is None:
            raise NotFound(f"Movie {movie_id} is not in the warehouse.")
        return info

    def search(self, query: str, limit: int = 10) -> list[dict]:
        """Movies whose title holds every word of the query (accent- and case-blind): the
        title itself first, then titles that start with it, then the most rated."""
        words = search_key(query).split()
        if not words:
            raise BadRequest("Give some words of a title to search for, e.g. ?q=shawshank.")
        return [self.movies[self.titles.ids[i]] for i in self.titles.find(words, limit)]

    def check_list_length(self, n: int) -> None:
        """A stored list is as long as the run made it (train --top-n)."""
        kept = int(self.params["top_n"])
        if n > kept:
            raise BadRequest(f"The served run kept {kept} per list: ask for at most {kept}, "
                             f"or run `reelhouse train --top-n {n}`.")

    def similar_to(self, movie_id: int, n: int) -> list[dict]:
        self.movie(movie_id)
        self.check_list_length(n)
        stored = self.similar.get(movie_id)
        if stored is None:
            return []  # no factors, or too few ratings to have a direction
        items, scores, _ = stored
        return [{**(self.movies.get(int(m)) or _unknown(m)), "rank": i + 1,
                 "score": float(s)} for i, (m, s) in enumerate(zip(items[:n], scores[:n],
                                                                     strict=True))]

    # --- users -----------------------------------------------------------------------------

    def is_known_user(self, user_id: int) -> bool:
        i = int(np.searchsorted(self.known_users, user_id))
        return i < len(self.known_users) and self.known_users[i] == user_id

    def rated_by(self, user_id: int) -> np.ndarray:
        stored = self.rated.get(user_id)
        return stored[0] if stored is not None else np.empty(0, dtype=np.int64)

    def for_user(self, user_id: int, n: int) -> tuple[list[dict], str]:
        """The served list of a user the warehouse knows, and its source: the run's stored
        list, never a movie the user has rated; the most-rated fallback where the run has
        none (a user with no factors). Unknown users are NotFound."""
        if not self.is_known_user(user_id):
            raise NotFound(f"User {user_id} is not in the warehouse: pick a user id from "
                           "movielens.user_stats, or POST a new user's ratings to "
                           "/recommendations.")
        self.check_list_length(n)
        rated = self.rated_by(user_id)
        stored = self.recommendations.get(user_id)
        if stored is not None and stored[2] and stored[2][0] != "most_rated":
            items, scores, sources = stored
            keep = ~_member(rated, items)  # rated since the run: not a pick any more
            listed = [{**(self.movies.get(int(m)) or _unknown(m)), "score": float(s),
                       "source": src} for m, s, src, k in zip(items, scores, sources, keep,
                                                               strict=True) if k][:n]
            if len(listed) < n:  # topped up with most-rated picks, each marked as such
                shown = np.union1d(rated, [item["movie_id"] for item in listed])
                listed += self.fallback(shown, n - len(listed))
            return listed, sources[0]
        return self.fallback(rated, n), "most_rated"

    def fallback(self, exclude: np.ndarray, n: int) -> list[dict]:
        """The most-rated list (top_lists.most_rated_for's rule: most ratings in the serving
        fit, ties by lower id, score = that count), without the excluded movies."""
        picks = self.popular[~np.isin(self.popular, exclude)][:n]  # a rare path
        counts = self.list_factors.num_ratings[self.list_factors.rows(picks)]
        return [{**(self.movies.get(int(m)) or _unknown(m)), "score": float(c),
                 "source": "most_rated"} for m, c in zip(picks, counts, strict=True)]

    def predict(self, user_id: int, movie_id: int) -> dict:
        """The rating model's estimate for a pair: μ + b_user + b_movie + p·q within the
        scale, as movielens.rating_estimate computes it in SQL. A side without factors adds
        nothing (source 'baseline')."""
        if not self.is_known_user(user_id):
            raise NotFound(f"User {user_id} is not in the warehouse.")
        self.movie(movie_id)
        u = int(self.rating_users.rows([user_id])[0])
        m = int(self.rating_movies.rows([movie_id])[0])
        estimate = float(self.run["global_mean"])
        if u >= 0:
            estimate += self.rating_users.bias[u]
        if m >= 0:
            estimate += self.rating_movies.bias[m]
        if u >= 0 and m >= 0:
            estimate += float(self.rating_users.matrix[u] @ self.rating_movies.matrix[m])
        low, high = self.scale
        return {"user_id": user_id, "movie_id": movie_id,
                "estimate": float(min(max(estimate, low), high)),
                "source": "rating_model" if u >= 0 and m >= 0 else "baseline"}

    # --- a new user ------------------------------------------------------------------------

    def check_ratings(self, ratings: list[tuple[int, float]]) -> None:
        """A new user's ratings as fold-in takes them, or BadRequest naming the first problem."""
        if not ratings:
            raise BadRequest("Give at least one rating: {\"ratings\": [{\"movie_id\": 1, "
                             "\"rating\": 4.5}]}.")
        if len(ratings) > MAX_FOLD_IN_RATINGS:
            raise BadRequest(f"{len(ratings):,} ratings is more than the "
                             f"{MAX_FOLD_IN_RATINGS:,} one request may fold in.")
        low, high = self.scale
        seen = set()
        for movie_id, rating in ratings:
            if movie_id in seen:
                raise BadRequest(f"Movie {movie_id} is rated twice: keep one rating per movie.")
            seen.add(movie_id)
            if not (isinstance(rating, int | float) and math.isfinite(rating)
                    and low <= rating <= high):
                raise BadRequest(f"Movie {movie_id} is rated {rating:g}, outside this "
                                 f"dataset's scale {low:g}-{high:g}.")
            if movie_id not in self.movies:
                raise BadRequest(f"Movie {movie_id} is not in the warehouse: rate movies "
                                 "found with /movies?q=.")

    def place_user(self, ratings: list[tuple[int, float]]) -> dict:
        """Fold-in's solve for a new user: their factors p, and what the scores and the
        explanations are made of. Movies the model has no factors for are left out."""
        params = self.params
        ids = np.array([m for m, _ in ratings], dtype=np.int64)
        values = np.array([r for _, r in ratings], dtype=np.float64)
        rows = self.list_factors.rows(ids)
        left_out = [int(m) for m in ids[rows < 0]]
        ids, values, rows = ids[rows >= 0], values[rows >= 0], rows[rows >= 0]
        if not len(ids):
            raise BadRequest("None of the rated movies was in the training data, so the model "
                             "cannot place this user: rate some better-known movies.")
        q = self.list_factors.matrix[rows]
        bias = self.list_factors.bias
        # The serving fit's mean (0 for implicit runs, which learn no biases).
        mean = self.run.get("serving_global_mean")
        mean = (self.run["global_mean"] if mean is None else mean) or 0.0
        user_bias = 0.0
        if params["implicit"]:
            values = implicit_value(params, values)
            used = values > 0  # a 0 (under the threshold) counts as not rated
            if not used.any():
                raise BadRequest(
                    f"The model learns only from ratings of {params['confidence_threshold']:g} "
                    "or more, and none of these is: rate some movies you liked.")
            confidence = 1.0 + params["alpha"] * np.abs(values)
            gram = self.movie_gram + q.T @ ((confidence - 1.0)[:, None] * q) \
                + params["reg_param"] * np.count_nonzero(used) * np.eye(q.shape[1])
            weights = np.where(used, confidence, 0.0)
        else:
            if params["bias_centred"]:  # the damped user bias, as biases.sql estimates it
                user_bias = float(np.sum(values - mean - bias[rows])
                                  / (len(values) + params["user_bias_damping"]))
            gram = q.T @ q + params["reg_param"] * len(values) * np.eye(q.shape[1])
            weights = values - mean - bias[rows] - user_bias
        # A⁻¹Qᵀ gives p and each rated movie's share of a score (for a nonnegative model the
        # shares are those of the unconstrained solve: close, and only used to explain).
        spread = np.linalg.solve(gram, q.T)
        p = nonnegative_solve(gram, q.T @ weights) if params["nonnegative"] else spread @ weights
        return {"factors": p, "ids": ids, "spread": spread, "weights": weights,
                "offset": float(mean) + user_bias, "left_out": left_out}

    def fold_in(self, ratings: list[tuple[int, float]], n: int) -> tuple[list[dict], list[int]]:
        """A new user's top n from these ratings, never a rated movie, each with the rated
        movie that adds most to its score; and the rated movies the model has no factors
        for (left out of the solve)."""
        self.check_ratings(ratings)
        ratings = sorted(ratings)  # the same sums in the same order, whatever order they came
        user = self.place_user(ratings)
        raw = user["offset"] + self.candidate_bias \
            + self.candidate_factors @ user["factors"].astype(np.float32)
        rated = np.array([m for m, _ in ratings], dtype=np.int64)
        masked = np.searchsorted(self.candidate_ids, rated)[_member(self.candidate_ids, rated)]
        raw[masked] = -np.inf  # never a rated movie
        top = _top(raw, self.candidate_ids, min(n, len(raw) - len(masked)))
        chosen = self.candidate_ids[top]
        # Each rated movie's share of each chosen movie's score: (y A⁻¹ q_j) w_j.
        y = self.list_factors.matrix[self.list_factors.rows(chosen)]
        reasons = user["ids"][np.argmax((y @ user["spread"]) * user["weights"], axis=1)]
        given = dict(ratings)
        low, high = self.scale
        items = []
        for movie_id, score, because in zip(chosen, raw[top], reasons, strict=True):
            because = int(because)
            score = float(score) if self.params["implicit"] else min(max(float(score), low),
                                                                     high)
            movie_id = int(movie_id)
            items.append({**(self.movies.get(movie_id) or _unknown(movie_id)), "score": score,
                          "because": {"movie_id": because,
                                      "title": self.movies[because]["title"],
                                      "rating": given[because]}})
        return items, user["left_out"]


def implicit_value(params: dict, ratings: np.ndarray) -> np.ndarray:
    """What implicit ALS learns from a rating: the numpy twin of als.implicit_value_sql, which
    training uses (tests/test_api.py checks they agree)."""
    if params["confidence"] == "binary":
        return np.ones_like(ratings)
    if params["confidence"] == "threshold":
        return np.where(ratings >= params["confidence_threshold"], 1.0, 0.0)
    return ratings.astype(np.float32).astype(np.float64)


def nonnegative_solve(gram: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """argmin over p >= 0 of ½pᵀAp − pᵀb by cyclic coordinate descent (small, strictly convex
    once regularised)."""
    p = np.zeros_like(rhs)
    for _ in range(500):
        previous = p.copy()
        for i in range(len(p)):
            residual = rhs[i] - gram[i] @ p + gram[i, i] * p[i]
            p[i] = max(0.0, residual / gram[i, i])
        if np.max(np.abs(p - previous)) < 1e-10:
            break
    return p


def _member(sorted_ids: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Which of `values` are in `sorted_ids` (a binary search each: no hashing, no copy)."""
    if not len(sorted_ids):
        return np.zeros(len(values), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_ids, values), len(sorted_ids) - 1)
    return sorted_ids[at] == values


def _top(scores: np.ndarray, ids: np.ndarray, n: int) -> np.ndarray:
    """Positions of the n best scores, best first, ties by lower id (as the SQL lists order).
    Every score at or above a bound that at least n scores reach is kept, then those few are
    sorted: a tie at the cut is broken by id, not by where a partition happened to put it.
    The bound is the n-th largest maximum of blocks of 64 scores (n blocks each hold a score
    at least that high), found in a 64th of the time of partitioning all of them."""
    n = min(n, len(scores))
    if n == 0:
        return np.empty(0, dtype=np.int64)
    block = 64
    usable = len(scores) - len(scores) % block
    if usable // block >= n:
        maxima = scores[:usable].reshape(-1, block).max(axis=1)
        bound = np.partition(maxima, len(maxima) - n)[len(maxima) - n]
    else:
        bound = np.partition(scores, len(scores) - n)[len(scores) - n]
    part = np.flatnonzero(scores >= bound)
    return part[np.lexsort((ids[part], -scores[part]))][:n]


def _unknown(movie_id) -> dict:
    return {"movie_id": int(movie_id), "title": f"movie {int(movie_id)}", "year": None,
            "genres": [], "num_ratings": None, "avg_rating": None, "bayesian_avg": None}


# --- loading ----------------------------------------------------------------------------------

def load(settings: Settings, versions: dict[str, int | None] | None = None) -> ServedModel:
    """The latest finished run as a ServedModel. `versions` pins model_runs, ratings_split and
    movie_stats to the Delta versions a watcher saw (None: the latest of each), so a build
    running meanwhile cannot be half read."""
    started = time.monotonic()
    pinned = versions or {}
    run = latest_run(settings, pinned.get(model_runs.RUNS_TABLE))
    outputs = dict(run["output_versions"])  # each table as the run left it
    params = json.loads(run.get("list_params") or run["params"])

    stats = read_table(settings, "movie_stats", ["movie_id", "title", "year", "genres",
                                                 "num_ratings", "avg_rating", "bayesian_avg"],
                       pinned.get("movie_stats"))
    movies = {}
    for row in stats.to_pylist():
        row["genres"] = row["genres"] or []
        movies[row["movie_id"]] = row

    list_factors = Factors.read(settings, "movie_factors", outputs["movie_factors"])
    candidates = np.flatnonzero(list_factors.num_ratings >= params["min_movie_ratings"])
    popular = list_factors.ids[np.lexsort((list_factors.ids, -list_factors.num_ratings))]

    recs = read_table(settings, "recommendations",
                      ["user_id", "rank", "movie_id", "score", "source"],
                      outputs["recommendations"])
    recommendations = Lists.from_columns(
        _ints(recs["user_id"]), _ints(recs["rank"]), _ints(recs["movie_id"]),
        recs["score"].to_numpy(), _strings(recs["source"]))
    sim = read_table(settings, "similar_movies",
                     ["movie_id", "rank", "similar_movie_id", "similarity"],
                     outputs["similar_movies"])
    similar = Lists.from_columns(_ints(sim["movie_id"]), _ints(sim["rank"]),
                                 _ints(sim["similar_movie_id"]), sim["similarity"].to_numpy())

    pairs = read_table(settings, "ratings_split", ["user_id", "movie_id"],
                       pinned.get("ratings_split"))
    rated = Lists.sets(pairs["user_id"].to_numpy(), pairs["movie_id"].to_numpy())
    del pairs
    known = _ints(read_table(settings, "user_stats", ["user_id"])["user_id"])

    return ServedModel(
        run=run, params=params, movies=movies, titles=TitleIndex(movies),
        list_factors=list_factors, movie_gram=list_factors.matrix.T @ list_factors.matrix,
        candidate_ids=list_factors.ids[candidates],
        candidate_factors=np.ascontiguousarray(list_factors.matrix[candidates], np.float32),
        candidate_bias=list_factors.bias[candidates].astype(np.float32),
        popular=popular, recommendations=recommendations,
        similar=similar,
        rating_users=Factors.read(settings, "rating_user_factors",
                                  outputs["rating_user_factors"]),
        rating_movies=Factors.read(settings, "rating_movie_factors",
                                   outputs["rating_movie_factors"]),
        rated=rated, known_users=np.union1d(known, rated.keys),
        metrics=_metrics(settings, run), loaded_seconds=time.monotonic() - started)


def _metrics(settings: Settings, run: dict) -> dict:
    """The run's RMSE and its served lists' ranking quality at 10 (when evaluate has run)."""
    metrics = {"rmse": run.get("rmse"), "mae": run.get("mae")}
    if table_version(settings, "ranking_metrics") is None:
        return metrics
    rows = read_table(settings, "ranking_metrics",
                      ["run_id", "model", "served", "relevance", "k", "ndcg_at_k",
                       "precision_at_k", "recall_at_k"]).to_pylist()
    for row in rows:
        if row["run_id"] == run["run_id"] and row["relevance"] == "any" and row["k"] == 10:
            key = "served" if row["served"] else row["model"]
            metrics[f"ndcg_at_10_{key}"] = row["ndcg_at_k"]
            if row["served"]:
                metrics["precision_at_10"] = row["precision_at_k"]
                metrics["recall_at_10"] = row["recall_at_k"]
    return metrics
