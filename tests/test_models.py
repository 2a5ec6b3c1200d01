"""The SQL models (sql/models) and title UDFs (udfs/titles.sql) on small hand-made raw tables.

The raw tables hold lines of every format (ml-latest, ml-100k, ml-1m, ml-10m) at once, good
and bad, plus 2,000 generated good ratings so that fractions and quantiles mean something.
The project is built once for the module; each test then checks one promise of the models.
The bad-input catalogue (issue 7: each bad line or file a user may bring, end to end from the
files, one test per case) is tests/test_bad_input.py.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from datetime import datetime

import pytest

from pipelines import runner, sql_project, writes
from pipelines.errors import ReelhouseError
from tests.conftest import fresh_warehouse

RAW_SCHEMA = ("dataset_format string, source_file string, line_number bigint, raw_line string, "
              "is_decodable boolean, ingested_at timestamp")
FILES_SCHEMA = ("dataset_format string, file_kind string, source_file string, size_bytes bigint, "
                "lines_read bigint, ingested_at timestamp")
INGESTED_AT = datetime(2024, 1, 1)
UNDECODABLE = "\ufffd,10,4.0,1"  # landed with is_decodable = false
# The build must not stop at the reject-share guard: this data is bad on purpose.
BUILD_VARS = {"max_reject_share": 1.0}
PRIOR_WEIGHT = 10  # var('bayesian_prior_weight') default

LATEST_RATINGS = "/data/ml-latest/ratings.csv"
# ml-latest ratings.csv data lines from line 2, with the reason each bad one must get.
LATEST_RATING_LINES = [
    ("1,10,4.0,1000000000", "duplicate of ratings.csv:4"),  # line 4 is later
    ("1,20,3.5,1000000001", None),
    ("1,10,2.0,1000000500", None),
    ("1,30,5.0,1000000600", "duplicate of ratings.csv:6"),  # same rated_at: last line wins
    ("1,30,1.0,1000000600", None),
    ("abc,10,4.0,1000000000", "user_id is not a positive integer: abc"),
    ("2,x,4.0,1000000000", "movie_id is not a positive integer: x"),
    ("2,10,5.5,1000000000", "rating off the 0.5-5.0 half-star scale: 5.5"),
    ("2,11,NaN,1000000000", "rating is not a number: NaN"),
    ("2,12,four,1000000000", "rating is not a number: four"),
    ("2,13,0,1000000000", "rating off the 0.5-5.0 half-star scale: 0"),
    ("2,14,-1,1000000000", "rating off the 0.5-5.0 half-star scale: -1"),
    ("2,15,4.0,-5", "timestamp is negative: -5"),
    ("2,16,4.0,soon", "timestamp is not whole unix seconds: soon"),
    ("2,17,4.0", "wrong field count: 3 (expected 4)"),
    ("", "empty line"),
    ("   ", "empty line"),
    (UNDECODABLE, "undecodable bytes"),
    ("0,10,4.0,1", "user_id is not a positive integer: 0"),
    ("3,99999999999,4.0,1", "movie_id is not a positive integer: 99999999999"),
    ("3,10,4.0,1,extra", "wrong field count: 5 (expected 4)"),
    ("3,18,4.0,99999999999999", "timestamp is after the year 9999: 99999999999999"),
]
OTHER_RATING_FILES = {
    ("ml-100k", "/data/ml-100k/u.data"): [
        ("500\t10\t3\t881250949", None),
        ("500\t20\t3.5\t881250949", "rating off the 1-5 whole-star scale: 3.5"),
        ("500\t30\t4,881250949", "wrong field count: 3 (expected 4)"),
        ("501\t10\t5\t881250950", None),
    ],
    ("ml-1m", "/data/ml-1m/ratings.dat"): [
        ("600::10::5::978300760", None),
        ("600::20::0::978300760", "rating off the 1-5 whole-star scale: 0"),
        ("600::30::4", "wrong field count: 3 (expected 4)"),
    ],
    ("ml-10m", "/data/ml-10m/ratings.dat"): [
        ("700::10::4.5::978300760", None),
    ],
}
NUM_GENERATED_USERS = 100
GENERATED_PER_USER = 20


def generated_rating_lines() -> list[str]:
    """2,000 good ml-latest lines: users 100-199, 20 distinct movies each out of 1-60."""
    rng = random.Random(7)
    lines = []
    for user in range(100, 100 + NUM_GENERATED_USERS):
        for movie in rng.sample(range(1, 61), GENERATED_PER_USER):
            rating = rng.randint(1, 10) / 2
            lines.append(f"{user},{movie},{rating},{rng.randint(900_000_000, 1_500_000_000)}")
    return lines


MOVIE_LINES = {
    ("ml-latest", "/data/ml-latest/movies.csv", 2): [
        '10,"Shawshank Redemption, The (1994)",Crime|Drama',
        '20,"City of Lost Children, The (Cité des enfants perdus, La) (1995)",Adventure|Drama',
        '30,"""Great"" Expectations (1998)",(no genres listed)',
        "40,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy",
        "50,Old Title (1990),Drama",
        "50,New Title (1990),Drama",
        "x,Bad (1990),Drama",
        '60,"Unterminated (1990),Drama',
        "70,,Drama",
        "80,\"Atalante, L' (1934)\",Comedy",
    ],
    ("ml-100k", "/data/ml-100k/u.item", 1): [
        "1001|Toy Story (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?Toy%20Story%20(1995)|"
        + "|".join(["0", "0", "0", "1", "1", "1"] + ["0"] * 13),
        "1002|unknown||||" + "|".join(["1"] + ["0"] * 18),
        "1003|Bad Flags (1990)|01-Jan-1990|||" + "|".join(["2"] + ["0"] * 18),
    ],
    ("ml-1m", "/data/ml-1m/movies.dat", 1): [
        "2001::Toy Story (1995)::Animation|Children's|Comedy",
        "2002::Title: With Colon (1999)::Drama",
        "2003::Only Two Fields",
    ],
}
ML_100K_GENRES = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
]  # fmt: skip
OTHER_LINES = {
    "genres": {("ml-100k", "/data/ml-100k/u.genre", 1):
               [f"{name}|{index}" for index, name in enumerate(ML_100K_GENRES)] + [""]},
    "users": {
        ("ml-100k", "/data/ml-100k/u.user", 1): [
            "500|24|M|technician|85711", "501|53|F|other|94043", "502|x|M|writer|1",
            "503|30|X|writer|1",
        ],
        ("ml-1m", "/data/ml-1m/users.dat", 1): [
            "600::F::1::10::48067", "601::M::56::16::70072", "602::M::30::1::1",
            "603::M::25::21::1",
        ],
    },
    "tags": {
        ("ml-latest", "/data/ml-latest/tags.csv", 2): [
            "1,10,funny,1445714994", '1,10,"funny, but sad",1445714995',
            '1,10,"the ""twist""",1445714996', "1,10,,1445714997",
        ],
        ("ml-10m", "/data/ml-10m/tags.dat", 1): ["700::10::sci-fi: space::1445714994"],
    },
    "links": {
        ("ml-latest", "/data/ml-latest/links.csv", 2): [
            "10,0111161,278", "20,0112682,", "40,0114709,862", "z,1,1", "90,12345678,1",
        ],
    },
}


def raw_rows(fmt: str, path: str, first_line: int, lines: list[str]) -> list[tuple]:
    return [(fmt, path, first_line + i, line, line != UNDECODABLE, INGESTED_AT)
            for i, line in enumerate(lines)]


def write_raw_tables(spark, settings) -> dict[str, list[tuple]]:
    tables: dict[str, list[tuple]] = {}
    tables["ratings"] = raw_rows("ml-latest", LATEST_RATINGS, 2,
                                 [line for line, _ in LATEST_RATING_LINES]
                                 + generated_rating_lines())
    for (fmt, path), lines in OTHER_RATING_FILES.items():
        tables["ratings"] += raw_rows(fmt, path, 1, [line for line, _ in lines])
    tables["movies"] = [row for (fmt, path, first), lines in MOVIE_LINES.items()
                        for row in raw_rows(fmt, path, first, lines)]
    for kind, files in OTHER_LINES.items():
        tables[kind] = [row for (fmt, path, first), lines in files.items()
                        for row in raw_rows(fmt, path, first, lines)]
    tables.setdefault("splits", [])  # ml-100k's u1.base ...: tests/test_ingest.py has them
    for kind, rows in tables.items():
        writes.replace_table(spark, settings, spark.createDataFrame(rows, RAW_SCHEMA),
                              f"raw_{kind}")
    files = defaultdict(int)
    for kind, rows in tables.items():
        for fmt, path, *_ in rows:
            files[(fmt, kind, path)] += 1
    writes.replace_table(
        spark, settings,
        spark.createDataFrame([(fmt, kind, path, 100, count, INGESTED_AT)
                               for (fmt, kind, path), count in files.items()], FILES_SCHEMA),
        "ingest_files")
    return tables


@pytest.fixture(scope="module")
def warehouse(spark, tmp_path_factory):
    """Settings of a warehouse with the raw tables above and every model built once."""
    settings = fresh_warehouse(spark, tmp_path_factory, "models")
    write_raw_tables(spark, settings)
    project = sql_project.load_project(settings, folders=("models",), cli_vars=BUILD_VARS)
    runner.build(spark, project)
    return settings


def rows(spark, sql: str) -> list:
    return spark.sql(sql).collect()


# --- title UDFs ---------------------------------------------------------------------------

TITLE_CASES = [  # raw title, clean_title, title_year
    ("Shawshank Redemption, The (1994)", "The Shawshank Redemption", 1994),
    ("City of Lost Children, The (Cité des enfants perdus, La) (1995)",
     "The City of Lost Children (La Cité des enfants perdus)", 1995),
    ("Postman, The (Postino, Il) (1994)", "The Postman (Il Postino)", 1994),
    ("Homme, L' (1999)", "L'Homme", 1999),
    ("Boot, Das (Boat, The) (1981)", "Das Boot (The Boat)", 1981),
    ("Misérables, Les (1995)", "Les Misérables", 1995),
    ("Walk in the Clouds, A (1995)", "A Walk in the Clouds", 1995),
    ("Awfully Big Adventure, An (1995)", "An Awfully Big Adventure", 1995),
    ("Mariachi, El (1992)", "El Mariachi", 1992),
    ("Vitelloni, I (a.k.a. The Young and the Passionate) (1953)",
     "I Vitelloni (a.k.a. The Young and the Passionate)", 1953),
    ("City of the Living Dead (a.k.a. Gates of Hell, The) (1980)",
     "City of the Living Dead (a.k.a. The Gates of Hell)", 1980),
    ("Crow, The: Wicked Prayer (2005)", "The Crow: Wicked Prayer", 2005),
    ("Good, the Bad and the Ugly, The (1966)", "The Good, the Bad and the Ugly", 1966),
    ("Cry, the Beloved Country (1995)", "Cry, the Beloved Country", 1995),
    ("(500) Days of Summer (2009)", "(500) Days of Summer", 2009),
    ("Death Note: Desu nôto (2006–2007)", "Death Note: Desu nôto", 2006),
    ("Band of Brothers (2001-2001)", "Band of Brothers", 2001),
    ("Blind Side, The  (2009) ", "The Blind Side", 2009),
    ("Babylon 5", "Babylon 5", None),
    ("Twelve Monkeys (a.k.a. 12 Monkeys) (1995)", "Twelve Monkeys (a.k.a. 12 Monkeys)", 1995),
]  # fmt: skip


def test_title_udfs_make_grouplens_titles_readable(warehouse, spark):
    titles = spark.createDataFrame([(raw,) for raw, _, _ in TITLE_CASES], "raw_title string")
    got = {r.raw_title: (r.title, r.year) for r in titles.selectExpr(
        "raw_title", "movielens.clean_title(raw_title) as title",
        "movielens.title_year(raw_title) as year").collect()}
    wrong = [(raw, got[raw], (title, year)) for raw, title, year in TITLE_CASES
             if got[raw] != (title, year)]
    assert not wrong, wrong


def test_title_udfs_pass_null_through(warehouse, spark):
    got = spark.sql("select movielens.clean_title(null) as title, movielens.title_year(null) "
                    "as year, movielens.clean_title('') as empty").first()
    assert (got.title, got.year, got.empty) == (None, None, None)


# --- ratings: rejects, duplicates, the count identity ---------------------------------------

def test_every_bad_rating_line_gets_its_specific_reason(warehouse, spark):
    got = {(r.source_file, r.line_number): r.reason
           for r in rows(spark, "select source_file, line_number, reason "
                                "from movielens.rejected_ratings")}
    expected = {(LATEST_RATINGS, 2 + i): reason
                for i, (_, reason) in enumerate(LATEST_RATING_LINES) if reason}
    for (_, path), lines in OTHER_RATING_FILES.items():
        expected.update({(path, 1 + i): reason for i, (_, reason) in enumerate(lines) if reason})
    assert set(got) == set(expected)
    for key, reason in expected.items():
        assert got[key].startswith(reason), (key, got[key])


def test_rejected_ratings_keep_the_ids_that_did_parse(warehouse, spark):
    bad_rating = spark.sql("select user_id, movie_id, rating from movielens.rejected_ratings "
                           f"where source_file = '{LATEST_RATINGS}' and line_number = 9").first()
    assert (bad_rating.user_id, bad_rating.movie_id, bad_rating.rating) == (2, 10, None)


def test_ratings_plus_rejects_account_for_every_raw_line(warehouse, spark):
    counts = spark.sql("""
        select
            (select count(*) from movielens.ratings) as loaded,
            (select count(*) from movielens.rejected_ratings) as rejected,
            (select count(*) from movielens.raw_ratings) as raw_lines,
            (select sum(lines_read) from movielens.ingest_files where file_kind = 'ratings')
                as lines_read
    """).first()
    assert counts.loaded + counts.rejected == counts.raw_lines == counts.lines_read
    summary = spark.sql("select * from movielens.ingest_summary").collect()
    assert {r.file_kind for r in summary} == {"ratings", "movies", "tags", "links", "users",
                                              "genres"}
    for row in summary:
        assert row.loaded + row.rejected == row.lines_read == row.raw_lines, row


def test_each_format_reads_its_own_separator_and_scale(warehouse, spark):
    kept = {r.user_id: r.rating for r in rows(
        spark, "select user_id, rating from movielens.ratings where user_id >= 500")}
    assert kept == {500: 3.0, 501: 5.0, 600: 5.0, 700: 4.5}


def test_ingest_summary_guards_the_reject_share(warehouse, spark):
    summary = {r.file_kind: r for r in rows(spark, "select * from movielens.ingest_summary")}
    genres = summary["genres"]
    # u.genre's trailing blank line is rejected but is not bad data
    assert (genres.rejected, genres.empty_lines, genres.reject_share) == (1, 1, 0.0)
    ratings = summary["ratings"]
    assert ratings.reject_share == pytest.approx(
        (ratings.rejected - ratings.empty_lines) / (ratings.lines_read - ratings.empty_lines))
    strict = sql_project.load_project(warehouse, folders=("models",))  # default max_reject_share
    with pytest.raises(ReelhouseError, match="max_reject_share"):
        runner.build(spark, strict, ["ingest_summary"], force=True)
    assert spark.table("movielens.ingest_summary").count() == len(summary)  # rolled back


# --- the other files ------------------------------------------------------------------------

def test_movies_parse_quoted_titles_genres_and_every_format(warehouse, spark):
    movies = {r.movie_id: r for r in rows(spark, "select * from movielens.movies")}
    assert movies[10].title == "The Shawshank Redemption" and movies[10].year == 1994
    assert movies[10].genres == ["Crime", "Drama"]
    assert movies[20].raw_title == "City of Lost Children, The (Cité des enfants perdus, La) (1995)"
    assert movies[30].raw_title == '"Great" Expectations (1998)' and movies[30].genres == []
    assert movies[50].title == "New Title"  # a repeated movie_id keeps the line read last
    assert movies[80].title == "L'Atalante"
    assert movies[1001].genres == ["Animation", "Children's", "Comedy"]
    assert str(movies[1001].release_date) == "1995-01-01"
    assert movies[1001].imdb_url.startswith("http://us.imdb.com/")
    assert movies[1002].genres == [] and movies[1002].year is None
    assert movies[2001].genres == ["Animation", "Children's", "Comedy"]
    assert movies[2002].title == "Title: With Colon"
    assert set(movies) == {10, 20, 30, 40, 50, 80, 1001, 1002, 2001, 2002}


def test_bad_lines_of_other_files_are_rejected_with_reasons(warehouse, spark):
    got = {(r.file_kind, r.raw_line): r.reason for r in rows(
        spark, "select file_kind, raw_line, reason from movielens.rejected_lines")}
    expected = {
        ("movies", "50,Old Title (1990),Drama"): "duplicate movie_id 50 of movies.csv:7",
        ("movies", "x,Bad (1990),Drama"): "movie_id is not a positive integer: x",
        ("movies", '60,"Unterminated (1990),Drama'): "malformed CSV line",
        ("movies", "70,,Drama"): "title is empty",
        ("movies", MOVIE_LINES[("ml-100k", "/data/ml-100k/u.item", 1)][2]):
            "genre flags are not all 0 or 1",
        ("movies", "2003::Only Two Fields"): "wrong field count: 2 (expected 3)",
        ("genres", ""): "empty line",
        ("users", "502|x|M|writer|1"): "age is not a whole number from 1 to 120: x",
        ("users", "503|30|X|writer|1"): "gender is not M or F: X",
        ("users", "602::M::30::1::1"): "age is not an ml-1m age code",
        ("users", "603::M::25::21::1"): "occupation is not an ml-1m occupation code (0-20): 21",
        ("tags", "1,10,,1445714997"): "tag is empty",
        ("links", "z,1,1"): "movie_id is not a positive integer: z",
    }
    assert set(got) == set(expected)
    for key, reason in expected.items():
        assert got[key].startswith(reason), (key, got[key])


def test_users_decode_ml_1m_codes_and_group_ml_100k_ages(warehouse, spark):
    users = {r.user_id: r for r in rows(spark, "select * from movielens.users")}
    assert set(users) == {500, 501, 600, 601}
    assert (users[500].age, users[500].age_group, users[500].occupation) == (24, "18-24",
                                                                             "technician")
    assert (users[600].gender, users[600].age_group, users[600].occupation) == (
        "F", "Under 18", "K-12 student")
    assert (users[601].age, users[601].age_group, users[601].occupation_id,
            users[601].occupation) == (56, "56+", 16, "self-employed")


def test_tags_unquote_csv_and_keep_colons_of_dat_files(warehouse, spark):
    tags = {r.tag for r in rows(spark, "select tag from movielens.tags")}
    assert tags == {"funny", "funny, but sad", 'the "twist"', "sci-fi: space"}


def test_links_build_urls_and_allow_an_empty_tmdb_id(warehouse, spark):
    links = {r.movie_id: r for r in rows(spark, "select * from movielens.links")}
    assert links[10].imdb_url == "https://www.imdb.com/title/tt0111161"
    assert links[10].tmdb_url == "https://www.themoviedb.org/movie/278"
    assert links[20].tmdb_id is None and links[20].tmdb_url is None
    assert links[90].imdb_url == "https://www.imdb.com/title/tt12345678"


# --- statistics -----------------------------------------------------------------------------

def ratings_by_movie(spark) -> dict[int, list[float]]:
    by_movie = defaultdict(list)
    for r in rows(spark, "select movie_id, rating from movielens.ratings"):
        by_movie[r.movie_id].append(r.rating)
    return by_movie


def test_movie_stats_bayesian_average_matches_the_formula(warehouse, spark):
    by_movie = ratings_by_movie(spark)
    everything = [x for values in by_movie.values() for x in values]
    global_mean = sum(everything) / len(everything)
    stats = {r.movie_id: r for r in rows(spark, "select * from movielens.movie_stats")}
    for movie_id, values in by_movie.items():
        expected = (PRIOR_WEIGHT * global_mean + sum(values)) / (PRIOR_WEIGHT + len(values))
        assert stats[movie_id].bayesian_avg == pytest.approx(expected)
        assert stats[movie_id].num_ratings == len(values)
        assert stats[movie_id].avg_rating == pytest.approx(sum(values) / len(values))
    # unrated movies are listed with 0 ratings and score the global mean
    assert stats[80].num_ratings == 0 and stats[80].avg_rating is None
    assert stats[80].bayesian_avg == pytest.approx(global_mean)
    # rated movies the movies file lacks are listed too
    assert stats[1].is_in_movies_file is False and stats[1].title is None
    assert sum(r.num_ratings for r in stats.values()) == len(everything)


def test_sparsity_density_and_exact_quantiles(warehouse, spark):
    pairs = [(r.user_id, r.movie_id) for r in rows(spark, "select * from movielens.ratings")]
    per_user, per_movie = defaultdict(int), defaultdict(int)
    for user, movie in pairs:
        per_user[user] += 1
        per_movie[movie] += 1
    got = spark.table("movielens.sparsity").first()
    assert (got.num_users, got.num_movies, got.num_ratings) == (
        len(per_user), len(per_movie), len(pairs))
    assert got.density == pytest.approx(len(pairs) / (len(per_user) * len(per_movie)))
    assert got.p50_ratings_per_user == pytest.approx(exact_percentile(per_user.values(), 0.5))
    assert got.p90_ratings_per_movie == pytest.approx(exact_percentile(per_movie.values(), 0.9))


def exact_percentile(values, fraction: float) -> float:
    """Linear interpolation between closest ranks, as Spark's percentile does."""
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def kept_ratings() -> list[float]:
    """The rating of every raw ratings line that must load, read from the lines themselves:
    the good lines of every format above and the generated ones (none of which repeats a
    pair)."""
    separators = {"ml-100k": "\t", "ml-1m": "::", "ml-10m": "::"}
    kept = [float(line.split(",")[2]) for line, reason in LATEST_RATING_LINES if reason is None]
    kept += [float(line.split(",")[2]) for line in generated_rating_lines()]
    for (fmt, _), lines in OTHER_RATING_FILES.items():
        kept += [float(line.split(separators[fmt])[2]) for line, reason in lines
                 if reason is None]
    return kept


def test_rating_distribution_counts_each_rating_value_and_its_shares(warehouse, spark):
    counts = Counter(kept_ratings())
    total = sum(counts.values())
    dist = rows(spark, "select * from movielens.rating_distribution order by rating")
    assert [(r.rating, r.num_ratings) for r in dist] == sorted(counts.items())
    running = 0
    for row in dist:
        running += counts[row.rating]
        assert row.share == pytest.approx(counts[row.rating] / total, abs=1e-12), row
        assert row.cumulative_share == pytest.approx(running / total, abs=1e-12), row
    assert sum(r.share for r in dist) == pytest.approx(1.0)
    assert dist[-1].cumulative_share == pytest.approx(1.0)


def test_genre_stats_count_a_movie_in_each_of_its_genres(warehouse, spark):
    genres = {r.genre: r for r in rows(spark, "select * from movielens.genre_stats")}
    assert genres["Drama"].num_movies == 4  # movies 10, 20, 50 and 2002
    assert genres["(no genres listed)"].num_movies == 2  # movies 30 and 1002


# --- the train/test split ---------------------------------------------------------------------

def split_of(spark) -> dict[tuple[int, int], str]:
    return {(r.user_id, r.movie_id): r.split
            for r in rows(spark, "select user_id, movie_id, split from movielens.ratings_split")}


def rebuild_split(spark, settings, **split_vars) -> dict[tuple[int, int], str]:
    project = sql_project.load_project(settings, folders=("models",),
                                  cli_vars={**BUILD_VARS, **split_vars})
    runner.build(spark, project, ["ratings_split"], force=True)
    return split_of(spark)


def test_random_split_is_deterministic_and_holds_out_the_fraction(warehouse, spark):
    first = split_of(spark)
    assert len(first) == spark.table("movielens.ratings").count()
    share = sum(s == "test" for s in first.values()) / len(first)
    assert 0.17 < share < 0.23
    previous = spark.conf.get("spark.sql.shuffle.partitions")
    spark.conf.set("spark.sql.shuffle.partitions", "7")
    try:
        again = rebuild_split(spark, warehouse)
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", previous)
    assert again == first
    assert rebuild_split(spark, warehouse, split_seed=7) != first
    half = rebuild_split(spark, warehouse, test_fraction=0.5)
    assert 0.45 < sum(s == "test" for s in half.values()) / len(half) < 0.55


def test_temporal_split_holds_out_each_users_latest_ratings(warehouse, spark):
    split = rebuild_split(spark, warehouse, split_method="temporal")
    by_user = defaultdict(list)
    for r in rows(spark, "select user_id, movie_id, rated_at from movielens.ratings"):
        by_user[r.user_id].append((r.rated_at, r.movie_id))
    for user, ratings in by_user.items():
        latest_first = sorted(ratings, reverse=True)
        num_test = min(round(len(ratings) * 0.2), len(ratings) - 1)
        expected = {movie: "test" if i < num_test else "train"
                    for i, (_, movie) in enumerate(latest_first)}
        assert {m: split[(user, m)] for _, m in ratings} == expected, user
    assert split[(500, 10)] == "train"  # a user with one rating keeps it in train


def split_draws(spark) -> dict[tuple[int, int], float]:
    """The random split's hash draw of every rating, the order the stratified and k-fold
    splits use."""
    return {(r.user_id, r.movie_id): r.draw for r in rows(spark, """
        select user_id, movie_id,
               cast(shiftrightunsigned(xxhash64(user_id, movie_id, 42), 11) as double)
                   / power(2, 53) as draw
        from movielens.ratings""")}


def test_stratified_split_holds_out_each_users_share(warehouse, spark):
    """Microsoft Recommenders' protocol: round(n * 0.2) of each user's n ratings (at most
    n - 1), the first in the order of the hash draw."""
    split = rebuild_split(spark, warehouse, split_method="stratified")
    by_user = defaultdict(list)
    for (user, movie), draw in split_draws(spark).items():
        by_user[user].append((draw, movie))
    for user, ratings in by_user.items():
        num_test = min(round(len(ratings) * 0.2), len(ratings) - 1)
        expected = {movie: "test" if i < num_test else "train"
                    for i, (_, movie) in enumerate(sorted(ratings))}
        assert {m: split[(user, m)] for _, m in ratings} == expected, user


def test_kfold_splits_test_every_rating_exactly_once(warehouse, spark):
    draws = split_draws(spark)
    tested = defaultdict(list)
    for fold in range(3):
        split = rebuild_split(spark, warehouse, split_method="kfold", folds=3, fold=fold)
        assert set(split) == set(draws)
        for key, label in split.items():
            if label == "test":
                tested[key].append(fold)
                assert int(draws[key] * 3) == fold
    assert set(tested) == set(draws) and all(len(f) == 1 for f in tested.values())
    rebuild_split(spark, warehouse)  # back to the default for the other tests


@pytest.mark.parametrize("split_vars, message", [
    ({"split_method": "leave_one_out"}, "split_method must be 'random', 'temporal', "
                                        "'stratified', 'kfold' or 'grouplens'"),
    ({"split_method": "grouplens", "grouplens_split": "u6"}, "grouplens_split must be one of"),
    ({"split_method": "kfold", "fold": 5}, "var fold must be a whole number from 0 to folds - 1"),
    ({"split_method": "kfold", "folds": 1}, "folds at least 2"),
])
def test_an_unknown_split_method_or_fold_fails_before_any_sql(warehouse, split_vars, message):
    with pytest.raises(ReelhouseError, match=message):
        sql_project.load_project(warehouse, folders=("models",), cli_vars=split_vars)
