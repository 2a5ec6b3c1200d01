"""The synthetic MovieLens generator: layout, realism, determinism and argument checks."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest

from pipelines.generate import (
    DATA_FILES,
    GENRES,
    LAST_TIMESTAMP,
    METADATA_FILE,
    NO_GENRES,
    default_sizes,
    generate_dataset,
)

NUM_RATINGS = 30_000
# Small chunks so the tests cross several chunk boundaries, as a big run does.
CHUNK = 4_000
HALF_STARS = {f"{k / 2:.1f}" for k in range(1, 11)}
HEADERS = {
    "ratings.csv": "userId,movieId,rating,timestamp",
    "movies.csv": "movieId,title,genres",
    "tags.csv": "userId,movieId,tag,timestamp",
    "links.csv": "movieId,imdbId,tmdbId",
}


def _rows(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))[1:]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("generated")
    calls = []
    meta = generate_dataset(
        out, NUM_RATINGS, seed=7, chunk_ratings=CHUNK, progress=lambda d, t: calls.append((d, t))
    )
    return out, meta, calls


@pytest.fixture(scope="module")
def ratings(dataset):
    return _rows(dataset[0] / "ratings.csv")


@pytest.fixture(scope="module")
def movies(dataset):
    return _rows(dataset[0] / "movies.csv")


def test_writes_the_grouplens_files_with_headers_and_lf(dataset):
    out, _, _ = dataset
    assert sorted(p.name for p in out.iterdir()) == sorted([*DATA_FILES, METADATA_FILE])
    for name, header in HEADERS.items():
        data = (out / name).read_bytes()
        assert b"\r" not in data
        assert data.endswith(b"\n")
        assert data.decode("utf-8").split("\n", 1)[0] == header


def test_row_count_matches_metadata(dataset, ratings):
    _, meta, _ = dataset
    assert meta["num_ratings"] == NUM_RATINGS == len(ratings)
    assert len({row[0] for row in ratings}) == meta["num_users"]
    assert len({row[1] for row in ratings}) == meta["num_rated_movies"]


def test_metadata_fields(dataset):
    out, meta, _ = dataset
    assert json.loads((out / METADATA_FILE).read_text()) == meta
    for key in (
        "seed",
        "num_users",
        "num_movies",
        "num_ratings",
        "true_rank",
        "noise_sigma",
        "global_mean",
        "expected_rmse_floor",
    ):
        assert key in meta
    assert (meta["seed"], meta["true_rank"], meta["noise_sigma"]) == (7, 8, 0.5)


def test_ratings_are_half_stars_written_like_grouplens(ratings):
    assert {row[2] for row in ratings} <= HALF_STARS
    # Both whole and half stars occur, across most of the scale.
    assert len({row[2] for row in ratings}) >= 8


def test_pairs_are_unique_and_sorted_by_user_then_movie(ratings):
    keys = [(int(row[0]), int(row[1])) for row in ratings]
    assert len(set(keys)) == len(keys)
    assert keys == sorted(keys)


def test_user_ids_are_contiguous_and_everyone_rates_enough(dataset, ratings):
    _, meta, _ = dataset
    per_user = Counter(int(row[0]) for row in ratings)
    assert sorted(per_user) == list(range(1, meta["num_users"] + 1))
    assert min(per_user.values()) >= 20 == meta["guaranteed_ratings_per_user"]
    assert min(per_user.values()) == meta["min_ratings_per_user"]


def test_rated_movies_exist_and_most_movies_are_rated(dataset, ratings, movies):
    _, meta, _ = dataset
    catalogue = {row[0] for row in movies}
    rated = {row[1] for row in ratings}
    assert len(catalogue) == len(movies) == meta["num_movies"]
    assert rated <= catalogue
    assert len(rated) > 0.6 * len(catalogue)


def test_popularity_and_activity_are_heavy_tailed(ratings):
    per_movie = sorted(Counter(row[1] for row in ratings).values(), reverse=True)
    top = per_movie[: max(1, len(per_movie) // 10)]
    assert sum(top) > 0.4 * len(ratings)
    per_user = sorted(Counter(row[0] for row in ratings).values())
    # Mean well above median: a few users rate a lot.
    assert sum(per_user) / len(per_user) > 1.3 * per_user[len(per_user) // 2]


def test_global_mean_is_near_movielens(dataset, ratings):
    _, meta, _ = dataset
    mean = sum(float(row[2]) for row in ratings) / len(ratings)
    assert meta["global_mean"] == pytest.approx(mean, abs=1e-5)
    assert 3.3 < mean < 3.8


def test_timestamps_are_unix_seconds_in_movielens_history(dataset, ratings):
    _, meta, _ = dataset
    stamps = [int(row[3]) for row in ratings]
    assert meta["first_timestamp"] == min(stamps)
    assert meta["last_timestamp"] == max(stamps) <= LAST_TIMESTAMP
    assert min(stamps) >= 820_454_400  # 1996-01-01


def test_titles_with_commas_are_quoted_and_round_trip(dataset, movies):
    out, _, _ = dataset
    lines = (out / "movies.csv").read_text(encoding="utf-8").split("\n")[1:-1]
    assert len(lines) == len(movies)
    comma_titles = 0
    for line, (movie_id, title, genres) in zip(lines, movies, strict=True):
        needs_quotes = "," in title or '"' in title
        quoted = '"' + title.replace('"', '""') + '"'
        assert line == f"{movie_id},{quoted if needs_quotes else title},{genres}"
        comma_titles += "," in title
    assert comma_titles > 0.03 * len(movies)
    assert any(title.endswith(", The") or ", The (" in title for _, title, _ in movies)
    assert any('"' in title for _, title, _ in movies)
    # Most titles end with a year in parentheses, as in GroupLens.
    with_year = [t for _, t, _ in movies if t[-6:-5] == "(" and t[-5:-1].isdigit()]
    assert len(with_year) > 0.98 * len(movies)


def test_genres_come_from_the_ml_latest_list(movies):
    seen = set()
    for _, _, genres in movies:
        if genres == NO_GENRES:
            seen.add(genres)
            continue
        parts = genres.split("|")
        assert len(parts) == len(set(parts))
        assert set(parts) <= set(GENRES)
        seen.update(parts)
    assert len(GENRES) == 19
    assert {"Drama", "Comedy", NO_GENRES} <= seen


def test_links_and_tags_have_the_grouplens_shape(dataset, ratings, movies):
    out, meta, _ = dataset
    links = _rows(out / "links.csv")
    assert [row[0] for row in links] == [row[0] for row in movies]
    assert all(len(imdb) >= 7 and imdb.isdigit() for _, imdb, _ in links)
    assert all(tmdb == "" or tmdb.isdigit() for _, _, tmdb in links)
    tags = _rows(out / "tags.csv")
    assert len(tags) == meta["num_tags"]
    assert 0 < len(tags) < 0.05 * len(ratings)
    rated = {(row[0], row[1]) for row in ratings}
    assert all((user, movie) in rated and tag for user, movie, tag, _ in tags)


def test_noise_and_oracle_floor_are_sensible(dataset):
    _, meta, _ = dataset
    sigma = meta["noise_sigma"]
    # Rounding to half stars adds a little error; clipping at the ends takes a little away.
    assert sigma * 0.9 <= meta["expected_rmse_floor"] <= sigma + 0.1


def test_noiseless_floor_is_only_rounding(tmp_path):
    meta = generate_dataset(tmp_path, 3_000, noise_sigma=0.0, seed=1)
    # Rounding to half stars alone: uniform error on +-0.25 has RMSE 0.144.
    assert 0.1 < meta["expected_rmse_floor"] < 0.16
    assert meta["noise_sigma"] == 0.0


def test_progress_reports_each_chunk_up_to_the_total(dataset):
    _, _, calls = dataset
    assert len(calls) >= NUM_RATINGS // CHUNK
    done = [d for d, _ in calls]
    assert done == sorted(done) and done[-1] == NUM_RATINGS
    assert {t for _, t in calls} == {NUM_RATINGS}


def test_same_arguments_give_byte_identical_files(dataset, tmp_path):
    out, _, _ = dataset
    generate_dataset(tmp_path, NUM_RATINGS, seed=7, chunk_ratings=CHUNK)
    for name in (*DATA_FILES, METADATA_FILE):
        assert (tmp_path / name).read_bytes() == (out / name).read_bytes(), name


def test_another_seed_gives_other_ratings(dataset, tmp_path):
    out, _, _ = dataset
    generate_dataset(tmp_path, NUM_RATINGS, seed=8, chunk_ratings=CHUNK)
    assert (tmp_path / "ratings.csv").read_bytes() != (out / "ratings.csv").read_bytes()


@pytest.mark.parametrize(
    ("ratings", "users", "movies"),
    [(1, None, None), (10, 3, 4), (5, 5, 2), (99, 10, 10), (500, 7, None), (800, None, 30)],
)
def test_small_and_tight_sizes_are_exact(tmp_path, ratings, users, movies):
    meta = generate_dataset(tmp_path, ratings, users, movies, chunk_ratings=37)
    rows = _rows(tmp_path / "ratings.csv")
    assert len(rows) == len({(r[0], r[1]) for r in rows}) == ratings == meta["num_ratings"]
    assert len({r[0] for r in rows}) == meta["num_users"]
    assert meta["num_users"] * meta["num_movies"] > ratings


def test_default_sizes_scale_like_movielens():
    users, movies = default_sizes(100_836)
    assert users == pytest.approx(610, rel=0.05) and movies == pytest.approx(9_742, rel=0.05)
    users, movies = default_sizes(25_000_095)
    assert users == pytest.approx(162_541, rel=0.05)
    assert movies == pytest.approx(59_047, rel=0.05)
    for count in (1, 10, 1_000, 12_345, 1_000_000, 100_000_000):
        users, movies = default_sizes(count)
        assert users * movies > count
        assert count <= 0.05 * users * movies or users * movies <= 20
    assert default_sizes(1_000, num_users=10)[0] == 10
    assert default_sizes(1_000, num_movies=77)[1] == 77


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_ratings": 0}, "num_ratings must be at least 1"),
        ({"num_ratings": -5}, "num_ratings must be at least 1"),
        ({"num_ratings": 10.5}, "num_ratings must be a whole number"),
        ({"num_ratings": "100"}, "num_ratings must be a whole number"),
        ({"num_ratings": 10, "num_users": 11, "num_movies": 5}, "must not exceed num_ratings"),
        ({"num_ratings": 10, "num_users": 2, "num_movies": 5}, "must exceed num_ratings"),
        ({"num_ratings": 10, "num_users": 0}, "num_users must be at least 1"),
        ({"num_ratings": 10, "num_movies": 0}, "num_movies must be at least 1"),
        ({"num_ratings": 10, "seed": -1}, "seed must be at least 0"),
        ({"num_ratings": 10, "true_rank": 0}, "true_rank must be at least 1"),
        ({"num_ratings": 10, "noise_sigma": -0.1}, "noise_sigma"),
        ({"num_ratings": 10, "noise_sigma": float("nan")}, "noise_sigma"),
        ({"num_ratings": 10, "progress": "yes"}, "progress"),
    ],
)
def test_invalid_arguments_raise_value_error(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate_dataset(tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()
