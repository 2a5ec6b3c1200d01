"""The bad-input catalogue (issue 7): every kind of bad input a user can hand reelhouse, one test
each (or one parametrized id each), in the order the issue lists them. Each ends in one of two
outcomes:

- a clear one-line error: `reelhouse: error: ...` on stderr, exit code 1, no traceback, and the
  warehouse untouched (the bad folder is offered to a warehouse that already holds a dataset,
  and no table gets a new Delta version);
- or the bad line quarantined in rejected_ratings with its reason, and nothing lost: every line
  lands in exactly one of ratings and rejected_ratings, and loaded + rejected = lines read.

Row-level cases share one small ml-latest folder (RATING_LINES, MOVIES_CSV below; the `dataset`
fixture ingests and builds it once for the module, through the real ingest and models). The
file-level errors are offered to that same warehouse through the CLI, run in process. Hostile
input (unsafe zips, SQL in arguments, odd model file names) comes last.

Variants covered elsewhere: test_download.py (backslash and drive-letter zip entries, symbolic
links, a downloaded zip that is truncated or fails its MD5), test_runner.py (--var values in a
hand-made model, model file names), test_maintenance.py (more table-name payloads),
test_models.py (every reject reason in every format: timestamps, field counts, users, tags,
links, bad movies lines in rejected_lines, the reject-share guard).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import io
import re
import shutil
import sys
import zipfile
from pathlib import Path

import pytest

from pipelines import cli, delta_log, ingest, naming, runner, session, sql_project
from pipelines.errors import ReelhouseError
from pipelines.settings import Settings
from tests.conftest import fresh_warehouse

HOSTILE = "x'; DROP TABLE movielens.ratings; --"
WATCHED_TABLES = ("raw_ratings", "raw_movies", "raw_tags", "raw_links", "raw_users",
                  "raw_genres", "ingest_files", "ratings", "movies", "rejected_ratings")

# --- the shared dataset ---------------------------------------------------------------------

RATINGS_HEADER = b"\xef\xbb\xbfuserId,movieId,rating,timestamp\r\n"  # line 1, after a UTF-8 BOM
# ratings.csv data lines from line 2, each with its own line ending (the file mixes them).
RATING_LINES: list[tuple[bytes, bytes]] = [
    (b"1,1,4.0,964982703", b"\n"),
    (b"1,2,3.5,964981247", b"\r\n"),
    (b"1,3,5.0,964982224", b"\r"),  # a lone CR, as classic Mac OS wrote
    (b"6,1,4.0,9649\xff\xfe82703", b"\n"),  # not UTF-8
    (b"2,1,0,964982703", b"\n"),
    (b"2,2,5.5,964982703", b"\n"),
    (b"2,3,-1,964982703", b"\n"),
    (b"2,4,NaN,964982703", b"\n"),
    (b"2,5,four,964982703", b"\n"),
    (b"abc,1,4.0,964982703", b"\n"),
    (b"3,xyz,4.0,964982703", b"\n"),
    (b"2147483648,1,4.0,964982703", b"\n"),  # one past the int range
    (b"3,99999999999,4.0,964982703", b"\n"),
    (b"2147483647,1,4.0,964982703", b"\n"),  # the largest int: fine
    (b"4,1,3.0,1000000000", b"\n"),
    (b"4,1,5.0,1000000500", b"\n"),  # the latest rating of (4, 1)
    (b"4,1,2.0,1000000100", b"\n"),
    (b"4,2,1.0,1000000600", b"\n"),
    (b"4,2,2.0,1000000600", b"\n"),  # same time as the line above: the line read last wins
    (b"5,999,4.0,964982703", b""),  # movie 999 is not in movies.csv; no final line ending
]
MOVIES_CSV = "\ufeff" + "".join(line + "\n" for line in [  # also after a BOM
    "movieId,title,genres",
    "1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy",
    '2,"American President, The (1995)",Comedy|Drama|Romance',
    '3,"""Great"" Expectations (1998)",Drama|Romance',
    "4,Амели (2001),Comedy|Romance",
    "5,千と千尋の神隠し (2001),Animation|Fantasy",
    '6,"Cité des enfants perdus, La (1995)",Fantasy|Sci-Fi',
    "7,Hello World (2010),(no genres listed)",
])
TAGS_CSV = 'userId,movieId,tag,timestamp\n1,1,"pixar, fun",1139045764\n1,2,politics,1139045765\n'
LINKS_CSV = "movieId,imdbId,tmdbId\n1,0114709,862\n2,0112346,\n"


def line_number(content: bytes) -> int:
    """The line number of a ratings.csv data line (the header is line 1)."""
    return 2 + [text for text, _ in RATING_LINES].index(content)


def write_dataset(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "ratings.csv").write_bytes(
        RATINGS_HEADER + b"".join(text + end for text, end in RATING_LINES))
    (folder / "movies.csv").write_text(MOVIES_CSV, encoding="utf-8")
    (folder / "tags.csv.gz").write_bytes(gzip.compress(TAGS_CSV.encode()))
    (folder / "links.csv").write_text(LINKS_CSV, encoding="utf-8")
    return folder.resolve()


@dataclasses.dataclass
class Loaded:
    """The shared dataset's warehouse, and what it holds after ingest and build (small tables,
    collected once, so each case below is a lookup, not a Spark job)."""

    settings: Settings
    folder: Path
    lines_read: dict[str, int]  # what ingest_dataset returned
    build_log: str  # what the build printed (its data-test warnings)
    raw_ratings: dict[int, str]  # line number -> raw_line
    ratings: list  # rows of movielens.ratings
    rejected_ratings: list  # rows of movielens.rejected_ratings
    movies: dict[int, object]  # movie_id -> row of movielens.movies
    files: dict[str, int]  # file name -> lines_read, from movielens.ingest_files


@pytest.fixture(scope="module")
def dataset(spark, tmp_path_factory) -> Loaded:
    """The folder above ingested into a fresh warehouse, then the ratings and movies marts and
    rejected_ratings built (with the staging views beneath them)."""
    settings = fresh_warehouse(spark, tmp_path_factory, "bad_input")
    folder = write_dataset(tmp_path_factory.mktemp("data") / "ml-latest-bad")
    lines_read = ingest.ingest_dataset(spark, settings, folder)
    log = io.StringIO()
    with contextlib.redirect_stderr(log):
        runner.build(spark, sql_project.load_project(settings, folders=("models",)),
                     ["+ratings", "+rejected_ratings"])
    sys.stderr.write(log.getvalue())

    def rows(table: str) -> list:
        return spark.table(f"movielens.{table}").collect()

    return Loaded(
        settings, folder, lines_read, log.getvalue(),
        raw_ratings={r.line_number: r.raw_line for r in rows("raw_ratings")},
        ratings=rows("ratings"), rejected_ratings=rows("rejected_ratings"),
        movies={r.movie_id: r for r in rows("movies")},
        files={Path(r.source_file).name: r.lines_read for r in rows("ingest_files")})


def fate(dataset: Loaded, content: bytes) -> list[tuple[str, str | None]]:
    """Where a ratings.csv line ended up: [('loaded', None)] or [('rejected', reason)]; any
    other answer means the line was lost or counted twice."""
    number = line_number(content)
    return ([("loaded", None) for r in dataset.ratings if r.line_number == number]
            + [("rejected", r.reason) for r in dataset.rejected_ratings
               if r.line_number == number])


def versions(spark, dataset: Loaded) -> dict[str, int | None]:
    return {t: delta_log.current_version(spark, dataset.settings, t) for t in WATCHED_TABLES}


@pytest.fixture
def reelhouse(spark, monkeypatch, capsys):
    """Run the `reelhouse` CLI in this process: returns (exit code, stderr). Its Spark session
    is the test session, whose catalog already holds the shared warehouse."""
    monkeypatch.setattr(session, "create_spark", lambda settings, **_: spark)

    def run(*argv) -> tuple[int, str]:
        capsys.readouterr()
        code = cli.main([str(arg) for arg in argv])
        return code, capsys.readouterr().err

    return run


def assert_one_line_error(code: int, err: str, expected: str | re.Pattern) -> None:
    """The user sees exactly one error line (the expected one), no traceback, exit code 1."""
    errors = [line for line in err.splitlines() if line.startswith("reelhouse: error: ")]
    assert code == 1 and len(errors) == 1, err
    message = errors[0].removeprefix("reelhouse: error: ")
    if isinstance(expected, re.Pattern):
        assert expected.fullmatch(message), message
    else:
        assert message == expected
    assert "Traceback" not in err


def offer_folder(spark, dataset: Loaded, reelhouse, folder: Path, expected) -> None:
    """`reelhouse ingest --data folder` on the loaded warehouse fails with `expected`, and no
    table of the warehouse changes."""
    before = versions(spark, dataset)
    code, err = reelhouse("ingest", "--data", folder, "--warehouse", dataset.settings.warehouse)
    assert_one_line_error(code, err, expected)
    assert versions(spark, dataset) == before


def folder_with(root: Path, files: dict[str, bytes | str]) -> Path:
    root.mkdir(parents=True)
    for name, content in files.items():
        data = content.encode() if isinstance(content, str) else content
        (root / name).write_bytes(data)
    return root.resolve()


GOOD_MOVIES = "movieId,title,genres\n1,Toy Story (1995),Animation\n"


# --- files ----------------------------------------------------------------------------------

def test_empty_file(spark, dataset, reelhouse, tmp_path):
    """An empty ratings.csv: `... ratings.csv is empty: it should hold the ratings.`"""
    folder = folder_with(tmp_path / "empty", {"ratings.csv": "", "movies.csv": GOOD_MOVIES})
    offer_folder(spark, dataset, reelhouse, folder,
                 f"{folder}/ratings.csv is empty: it should hold the ratings.")


def test_header_only(spark, dataset, reelhouse, tmp_path):
    """A ratings.csv with its header and nothing else: `The ratings file in ... has no ratings
    after its header.` (and the raw tables are not emptied on the way)."""
    folder = folder_with(tmp_path / "header", {
        "ratings.csv": "userId,movieId,rating,timestamp\n", "movies.csv": GOOD_MOVIES})
    offer_folder(spark, dataset, reelhouse, folder,
                 f"The ratings file in {folder} has no ratings after its header.")


@pytest.mark.parametrize("delimiter", [";", "\t"], ids=["semicolon", "tab"])
def test_wrong_delimiter(spark, dataset, reelhouse, tmp_path, delimiter):
    """A ratings.csv separated by ';' or TAB: `... line 1 is 'userId;movieId;...', not the header
    'userId,movieId,rating,timestamp': is it a GroupLens file, comma-separated?`"""
    header = delimiter.join(["userId", "movieId", "rating", "timestamp"])
    folder = folder_with(tmp_path / "delimiter", {
        "ratings.csv": f"{header}\n{delimiter.join(['1', '1', '4.0', '964982703'])}\n",
        "movies.csv": GOOD_MOVIES})
    offer_folder(spark, dataset, reelhouse, folder,
                 f"{folder}/ratings.csv line 1 is {header!r}, not the header "
                 "'userId,movieId,rating,timestamp': is it a GroupLens file, comma-separated?")


def test_utf8_bom(dataset):
    """ratings.csv and movies.csv start with a UTF-8 byte order mark (as Excel writes them):
    the headers are recognised and the first data lines load like any other."""
    assert fate(dataset, b"1,1,4.0,964982703") == [("loaded", None)]
    assert dataset.movies[1].line_number == 2
    assert not [line for line in dataset.raw_ratings.values() if "\ufeff" in line]


def test_mixed_line_endings(dataset):
    """LF, CRLF and a lone CR in one file, and no line ending at the end: every line lands
    with its editor line number and without the line-ending characters."""
    assert {number: dataset.raw_ratings[number] for number in (2, 3, 4)} == {
        2: "1,1,4.0,964982703", 3: "1,2,3.5,964981247", 4: "1,3,5.0,964982224"}
    last = len(RATING_LINES) + 1
    assert dataset.raw_ratings[last] == "5,999,4.0,964982703"
    assert sorted(dataset.raw_ratings) == list(range(2, last + 1))
    assert {(r.movie_id, r.rating) for r in dataset.ratings if r.user_id == 1} == {
        (1, 4.0), (2, 3.5), (3, 5.0)}


def test_undecodable_bytes(dataset):
    """A ratings line with bytes that are not UTF-8 is quarantined, shown with U+FFFD:
    `undecodable bytes: the line is not valid in its file's encoding`."""
    line = b"6,1,4.0,9649\xff\xfe82703"
    assert fate(dataset, line) == [
        ("rejected", "undecodable bytes: the line is not valid in its file's encoding")]
    assert dataset.raw_ratings[line_number(line)] == line.decode("utf-8", errors="replace")


# --- ratings lines --------------------------------------------------------------------------

@pytest.mark.parametrize("line, reason", [
    (b"2,1,0,964982703", "rating off the 0.5-5.0 half-star scale: 0"),
    (b"2,2,5.5,964982703", "rating off the 0.5-5.0 half-star scale: 5.5"),
    (b"2,3,-1,964982703", "rating off the 0.5-5.0 half-star scale: -1"),
    (b"2,4,NaN,964982703", "rating is not a number: NaN"),
    (b"2,5,four,964982703", "rating is not a number: four"),
], ids=["0", "5.5", "-1", "NaN", "four"])
def test_bad_rating(dataset, line, reason):
    """Ratings 0, 5.5, -1, NaN and "four" are quarantined, e.g. `rating is not a number: NaN`."""
    assert fate(dataset, line) == [("rejected", reason)]


@pytest.mark.parametrize("line, reason", [
    (b"abc,1,4.0,964982703", "user_id is not a positive integer: abc"),
    (b"3,xyz,4.0,964982703", "movie_id is not a positive integer: xyz"),
], ids=["user", "movie"])
def test_non_numeric_id(dataset, line, reason):
    """A user or movie id that is not a number: `user_id is not a positive integer: abc`."""
    assert fate(dataset, line) == [("rejected", reason)]


@pytest.mark.parametrize("line, reason", [
    (b"2147483648,1,4.0,964982703", "user_id is not a positive integer: 2147483648"),
    (b"3,99999999999,4.0,964982703", "movie_id is not a positive integer: 99999999999"),
    (b"2147483647,1,4.0,964982703", None),
], ids=["user-2147483648", "movie-99999999999", "user-2147483647-fits"])
def test_id_beyond_int_range(dataset, line, reason):
    """Ids past 2,147,483,647 are quarantined (`user_id is not a positive integer:
    2147483648`); the largest int itself loads."""
    assert fate(dataset, line) == [("rejected", reason) if reason else ("loaded", None)]


def test_repeated_user_movie_pair(dataset):
    """(user 4, movie 1) rated three times: the latest rating wins, the others are quarantined
    as `duplicate of ratings.csv:N (kept as the latest rating of this user and movie)`; with
    equal times, the line read last wins."""
    kept = {(4, 1): line_number(b"4,1,5.0,1000000500"), (4, 2): line_number(b"4,2,2.0,1000000600")}
    assert {(r.movie_id, r.rating, r.line_number) for r in dataset.ratings if r.user_id == 4} == {
        (1, 5.0, kept[(4, 1)]), (2, 2.0, kept[(4, 2)])}
    duplicate = "duplicate of ratings.csv:{} (kept as the latest rating of this user and movie)"
    for line, pair in [(b"4,1,3.0,1000000000", (4, 1)), (b"4,1,2.0,1000000100", (4, 1)),
                       (b"4,2,1.0,1000000600", (4, 2))]:
        assert fate(dataset, line) == [("rejected", duplicate.format(kept[pair]))]
        row = next(r for r in dataset.rejected_ratings if r.line_number == line_number(line))
        assert (row.user_id, row.movie_id, row.rating, Path(row.kept_source_file).name,
                row.kept_line_number) == (*pair, float(line.split(b",")[2]), "ratings.csv",
                                          kept[pair])


def test_ratings_of_movies_missing_from_the_movies_file(dataset):
    """A rating of movie 999, which movies.csv lacks, is kept; the build warns
    `WARN relationships(ratings.movie_id): 1 failing rows` and does not fail."""
    assert fate(dataset, b"5,999,4.0,964982703") == [("loaded", None)]
    assert 999 not in dataset.movies
    assert "WARN relationships(ratings.movie_id): 1 failing rows" in dataset.build_log


def test_every_ratings_line_is_accounted_for(dataset):
    """Nothing lost: for ratings.csv, loaded + rejected = lines read = lines landed, and
    every line has exactly one fate."""
    assert dataset.lines_read == {"ratings": 20, "movies": 7, "tags": 2, "links": 2,
                                  "users": 0, "genres": 0, "splits": 0}
    assert dataset.files["ratings.csv"] == len(dataset.raw_ratings) == len(RATING_LINES)
    assert (len(dataset.ratings), len(dataset.rejected_ratings)) == (7, 13)
    assert all(len(fate(dataset, line)) == 1 for line, _ in RATING_LINES)


# --- movies lines ---------------------------------------------------------------------------

@pytest.mark.parametrize("movie_id, raw_title, title, year", [
    (2, "American President, The (1995)", "The American President", 1995),
    (3, '"Great" Expectations (1998)', '"Great" Expectations', 1998),
    (4, "Амели (2001)", "Амели", 2001),
    (5, "千と千尋の神隠し (2001)", "千と千尋の神隠し", 2001),
    (6, "Cité des enfants perdus, La (1995)", "La Cité des enfants perdus", 1995),
], ids=["comma", "quotes", "cyrillic", "japanese", "comma-and-accents"])
def test_titles_with_commas_quotes_and_non_latin_letters(dataset, movie_id, raw_title, title,
                                                          year):
    """Quoted titles with commas and doubled quotes, Cyrillic and Japanese: each movie loads
    with its title as published and a readable one (`The American President`)."""
    movie = dataset.movies[movie_id]
    assert (movie.raw_title, movie.title, movie.year) == (raw_title, title, year)


def test_no_genres_listed(dataset):
    """`(no genres listed)` loads as a movie with an empty genre list, not a genre; and every
    line of movies.csv loaded (7 read, 7 movies)."""
    assert (dataset.movies[7].genres, dataset.movies[7].num_genres) == ([], 0)
    assert "(no genres listed)" not in {g for m in dataset.movies.values() for g in m.genres}
    assert dataset.files["movies.csv"] == len(dataset.movies) == 7


# --- damaged files, missing files -----------------------------------------------------------

def test_truncated_zip(spark, dataset, reelhouse, tmp_path):
    """A zip cut short: `... ml-latest-bad.zip is damaged (truncated or corrupt): download it
    again.` (a truncated *download* is refused as well: test_download.py)."""
    archive = tmp_path / "ml-latest-bad.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in dataset.folder.iterdir():
            zipped.write(path, f"ml-latest-bad/{path.name}")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    offer_folder(spark, dataset, reelhouse, archive,
                 f"{archive.resolve()} is damaged (truncated or corrupt): download it again.")


def test_truncated_gzip(spark, dataset, reelhouse, tmp_path):
    """A movies.csv.gz cut short: `... movies.csv.gz could not be read (java.io.EOFException:
    Unexpected end of input stream): the file may be truncated or damaged; replace it.` The
    ratings.csv.gz beside it is fine, and still no table changes. (An intact .gz is read: the
    shared dataset's tags.csv.gz.)"""
    movies = "movieId,title,genres\n" + "".join(
        f"{i},Movie number {i} ({1900 + i % 100}),Drama|Comedy\n" for i in range(1, 3000))
    compressed = gzip.compress(movies.encode())
    folder = folder_with(tmp_path / "gz", {
        "ratings.csv.gz": gzip.compress(b"userId,movieId,rating,timestamp\n1,1,4.0,964982703\n"),
        "movies.csv.gz": compressed[: len(compressed) // 2]})
    offer_folder(spark, dataset, reelhouse, folder,
                 f"{folder}/movies.csv.gz could not be read (java.io.EOFException: Unexpected "
                 "end of input stream): the file may be truncated or damaged; replace it.")
    assert dataset.files["tags.csv.gz"] == dataset.lines_read["tags"] == 2


@pytest.mark.parametrize("files, missing", [
    ({"movies.csv": GOOD_MOVIES, "tags.csv": "userId,movieId,tag,timestamp\n"},
     "has movies.csv but no ratings.csv: a ml-latest folder"),
    ({"u.item": "1|Toy Story (1995)|01-Jan-1995||x" + "|0" * 19 + "\n", "u.user": "1|24|M|x|1\n"},
     "has u.item but no u.data: a ml-100k folder"),
    ({"movies.dat": "1::Toy Story (1995)::Animation\n", "users.dat": "1::F::1::10::48067\n"},
     "has movies.dat but no ratings.dat: a ml-1m folder"),
], ids=["ml-latest", "ml-100k", "ml-1m"])
def test_dataset_folder_without_its_ratings_file(spark, dataset, reelhouse, tmp_path, files,
                                                 missing):
    """A folder with movies but no ratings: `... has movies.csv but no ratings.csv: a
    ml-latest folder needs its ratings file.`"""
    folder = folder_with(tmp_path / "no-ratings", files)
    offer_folder(spark, dataset, reelhouse, folder,
                 f"{folder} {missing} needs its ratings file.")


def test_folder_with_no_movielens_files(spark, dataset, reelhouse, tmp_path):
    """A folder holding no MovieLens layout at all: the error names every layout it knows."""
    folder = folder_with(tmp_path / "other", {"readme.txt": "hello\n"})
    offer_folder(spark, dataset, reelhouse, folder,
                 f"{folder} holds no MovieLens layout reelhouse knows: {ingest.KNOWN_LAYOUTS}.")


@pytest.mark.parametrize("folder, problem", [("missing", "does not exist"),
                                             ("empty", "has no reelhouse_project.yml")],
                         ids=["missing", "no-manifest"])
def test_project_dir_that_is_not_a_sql_project(spark, dataset, reelhouse, tmp_path, folder,
                                               problem):
    """`reelhouse build --project-dir DIR` where DIR is missing or has no manifest: `The SQL
    project DIR does not exist: point --project-dir (or REELHOUSE_PROJECT_DIR) at a folder
    holding reelhouse_project.yml ...` before any model is read, and no table changes."""
    (tmp_path / "empty").mkdir()
    before = versions(spark, dataset)
    code, err = reelhouse("build", "--project-dir", tmp_path / folder,
                          "--warehouse", dataset.settings.warehouse)
    assert_one_line_error(code, err, f"The SQL project {(tmp_path / folder).resolve()} "
                                     f"{problem}: point --project-dir (or REELHOUSE_PROJECT_DIR) "
                                     "at a folder holding reelhouse_project.yml (and models/, "
                                     "macros/, tests/, udfs/).")
    assert versions(spark, dataset) == before


def test_project_dir_flag_wins_over_the_environment(reelhouse, tmp_path, monkeypatch):
    """`reelhouse compile --project-dir DIR` renders DIR's models, not those of
    REELHOUSE_PROJECT_DIR (which, alone, is the project compiled)."""
    for project, model in (("flag", "from_flag"), ("env", "from_env")):
        (tmp_path / project / "models" / "marts").mkdir(parents=True)
        (tmp_path / project / "models" / "marts" / f"{model}.sql").write_text("select 1 as n")
        (tmp_path / project / "reelhouse_project.yml").write_text("name: mine\n")
    monkeypatch.chdir(tmp_path)  # compile writes ./target/compiled
    monkeypatch.setenv("REELHOUSE_PROJECT_DIR", str(tmp_path / "env"))

    def compiled(*flags) -> list[str]:
        shutil.rmtree(tmp_path / "target", ignore_errors=True)
        assert reelhouse("compile", *flags)[0] == 0
        return sorted(p.stem for p in (tmp_path / "target" / "compiled" / "marts").iterdir())

    assert compiled() == ["from_env"]
    assert compiled("--project-dir", tmp_path / "flag") == ["from_flag"]


# --- hostile input --------------------------------------------------------------------------

# Entry names: `{tmp}` stands for the test's tmp_path (so the absolute one points there).
UNSAFE_ENTRIES = [
    ("ml-latest-small/../../evil.txt", "its `..` would land outside the destination"),
    ("{tmp}/evil.txt", "it has an absolute path"),
]


def evil_zip(path: Path, entry: str) -> Path:
    """An ml-latest-small zip with one more entry, named `entry`."""
    with zipfile.ZipFile(path, "w") as zipped:
        zipped.writestr("ml-latest-small/ratings.csv", "userId,movieId,rating,timestamp\n")
        zipped.writestr("ml-latest-small/movies.csv", GOOD_MOVIES)
        zipped.writestr("ml-latest-small/tags.csv", "userId,movieId,tag,timestamp\n")
        zipped.writestr("ml-latest-small/links.csv", "movieId,imdbId,tmdbId\n")
        zipped.writestr(zipfile.ZipInfo(entry), "pwned")
    return path


@pytest.mark.parametrize("entry, why", UNSAFE_ENTRIES, ids=["parent", "absolute"])
def test_downloaded_zip_with_unsafe_paths_is_refused(reelhouse, tmp_path, monkeypatch, entry,
                                                     why):
    """`reelhouse download` of a zip whose entry climbs out with ../ or is absolute: `Refusing
    to unpack ml-latest-small.zip: entry '../..' is unsafe because ...; nothing was
    extracted.` (A mirror in a local folder stands in for GroupLens.)"""
    entry = entry.format(tmp=tmp_path)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    archive = evil_zip(mirror / "ml-latest-small.zip", entry)
    digest = hashlib.md5(archive.read_bytes()).hexdigest()
    (mirror / "ml-latest-small.zip.md5").write_text(f"MD5 (ml-latest-small.zip) = {digest}\n")
    monkeypatch.setenv("REELHOUSE_MOVIELENS_URL", mirror.as_uri())
    out = tmp_path / "out" / "data"
    code, err = reelhouse("download", "ml-latest-small", "--out", out)
    assert_one_line_error(code, err, f"Refusing to unpack ml-latest-small.zip: entry {entry!r} "
                                     f"is unsafe because {why}; nothing was extracted.")
    assert [p for p in out.iterdir() if not p.name.startswith(".")] == []
    assert not (tmp_path / "out" / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()


@pytest.mark.parametrize("entry, why", UNSAFE_ENTRIES, ids=["parent", "absolute"])
def test_zip_given_as_data_with_unsafe_paths_is_refused(spark, dataset, reelhouse, tmp_path,
                                                        entry, why):
    """`reelhouse ingest --data evil.zip`: the same refusal, and no table changes."""
    entry = entry.format(tmp=tmp_path)
    archive = evil_zip(tmp_path / "evil.zip", entry)
    offer_folder(spark, dataset, reelhouse, archive,
                 f"Refusing to unpack evil.zip: entry {entry!r} is unsafe because {why}; "
                 "nothing was extracted.")
    assert not (tmp_path / "evil.txt").exists()


def test_var_name_carrying_sql_is_rejected(spark, dataset, reelhouse):
    """`--var "x'; DROP ...=1"`: `"x'; DROP TABLE movielens.ratings; --" is not a valid var
    name: use letters, digits and underscores only.` (before Spark starts). No table changes."""
    before = versions(spark, dataset)
    code, err = reelhouse("build", "--var", f"{HOSTILE}=1",
                          "--warehouse", dataset.settings.warehouse)
    assert_one_line_error(code, err, f"{HOSTILE!r} is not a valid var name: use letters, "
                                     "digits and underscores only.")
    assert versions(spark, dataset) == before


def test_var_value_carrying_sql_is_quoted(spark, dataset, reelhouse, tmp_path, monkeypatch):
    """`--var "split_seed=x'; DROP ..."` reaches SQL as one quoted string literal, which Spark
    reads back as the same text; a var the models check is refused instead (`Model
    ratings_split: var split_method must be 'random', 'temporal', …, got 'x\\'; DROP ...'`).
    No table changes."""
    monkeypatch.chdir(tmp_path)  # compile writes ./target/compiled
    before = versions(spark, dataset)
    code, _ = reelhouse("compile", "--select", "ratings_split", "--var", f"split_seed={HOSTILE}")
    assert code == 0
    compiled = (tmp_path / "target" / "compiled" / "marts" / "ratings_split.sql").read_text()
    literal = naming.sql_string(HOSTILE)
    assert f"xxhash64(user_id, movie_id, {literal})" in compiled
    assert spark.sql(f"select {literal} as seed").first().seed == HOSTILE

    code, err = reelhouse("compile", "--var", f"split_method={HOSTILE}")
    assert_one_line_error(code, err, "Model ratings_split: var split_method must be 'random', "
                                     "'temporal', 'stratified', 'kfold' or 'grouplens', got "
                                     f"{literal}")
    assert versions(spark, dataset) == before


def test_select_carrying_sql_is_rejected(spark, dataset, reelhouse):
    """`reelhouse build --select "x'; DROP ..."`: `--select "x';" names no model; models are:
    ...` before any SQL runs, and no table changes."""
    before = versions(spark, dataset)
    code, err = reelhouse("build", "--select", HOSTILE, "--warehouse", dataset.settings.warehouse)
    assert_one_line_error(code, err, re.compile(
        re.escape("--select \"x';\" names no model; models are: ") + r".*\bratings\b.*\."))
    assert versions(spark, dataset) == before


@pytest.mark.parametrize("command", [["history"], ["restore", "--version", "0"]],
                         ids=["history", "restore"])
def test_table_argument_carrying_sql_is_rejected(spark, dataset, reelhouse, command):
    """`reelhouse history "x'; DROP ..."` (or restore): `"x'; DROP TABLE movielens.ratings; --"
    is not a valid table name: use letters, digits and underscores only.` No table changes."""
    before = versions(spark, dataset)
    code, err = reelhouse(command[0], HOSTILE, *command[1:],
                          "--warehouse", dataset.settings.warehouse)
    assert_one_line_error(code, err, f"{HOSTILE!r} is not a valid table name: use letters, "
                                     "digits and underscores only.")
    assert versions(spark, dataset) == before


def test_model_file_name_that_is_not_a_plain_identifier_is_refused(dataset, tmp_path):
    """A model file `x'; DROP TABLE movielens.ratings; --.sql` stops the project from loading:
    `Model file ... is not named as a plain identifier: rename it to letters, digits and
    underscores (the file name is the table name).`"""
    models = tmp_path / "sql" / "models"
    models.mkdir(parents=True)
    (tmp_path / "sql" / "macros").mkdir()
    (models / "fine.sql").write_text("select 1 as n")
    (models / f"{HOSTILE}.sql").write_text("select 1 as n")
    settings = dataclasses.replace(dataset.settings, project_dir=tmp_path / "sql")
    with pytest.raises(ReelhouseError) as caught:
        sql_project.load_project(settings, folders=("models",))
    assert str(caught.value) == (
        f"Model file {models / (HOSTILE + '.sql')} is not named as a plain identifier: rename "
        "it to letters, digits and underscores (the file name is the table name).")


def test_a_spark_sql_error_is_not_also_logged_with_its_jvm_stack_trace(spark):
    """PySpark logs each SQL error it raises (JVM stack trace included) as JSON on stderr;
    the session factory switches that off, since reelhouse says what failed in one line."""
    import logging

    from pyspark.errors import AnalysisException
    from pyspark.logger import PySparkLogger

    records: list[logging.LogRecord] = []
    collector = logging.Handler()
    collector.emit = records.append
    logger = PySparkLogger.getLogger("SQLQueryContextLogger")
    logger.addHandler(collector)
    try:
        with pytest.raises(AnalysisException, match="TABLE_OR_VIEW_NOT_FOUND"):
            spark.sql("select no_column from movielens.no_such_table").collect()
    finally:
        logger.removeHandler(collector)
    assert records == []
