"""Ingest lands every line of every GroupLens layout in the raw tables, numbered and decoded.

Bad input (empty, header-only, BOM, mixed line endings, undecodable bytes, gzip and zip damage,
missing files, unsafe zips) is catalogued in tests/test_bad_input.py, one test per case."""

from __future__ import annotations

import pytest

from pipelines import ingest
from pipelines.errors import ReelhouseError
from tests.conftest import latest_folder, write_file


def raw_lines(spark, table: str) -> list[tuple]:
    return [tuple(r) for r in spark.sql(
        f"select line_number, raw_line, is_decodable, dataset_format from movielens.{table} "
        "order by line_number").collect()]


def test_ml_100k_reads_tabs_pipes_and_iso_8859_1(spark, new_warehouse, tmp_path):
    folder = tmp_path / "ml-100k"
    write_file(folder, "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    write_file(folder, "u.item", "1|Toy Story (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?"
               "Toy%20Story%20(1995)|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
               "2|Misérables, Les (1995)|01-Jan-1995||http://x|0|0|0|0|0|0|0|0|1|0|0|0|1|0|0|0|0|0|0\n",
               encoding="iso-8859-1")
    write_file(folder, "u.user", "1|24|M|technician|85711\n2|53|F|other|94043\n")
    write_file(folder, "u.genre", "unknown|0\nAction|1\nAdventure|2\n\n")
    settings = new_warehouse()
    counts = ingest.ingest_dataset(spark, settings, folder)
    assert counts["ratings"] == 2 and counts["movies"] == 2 and counts["users"] == 2
    assert raw_lines(spark, "raw_ratings")[0] == (1, "196\t242\t3\t881250949", True, "ml-100k")
    assert raw_lines(spark, "raw_movies")[1][1].startswith("2|Misérables, Les (1995)|")
    # u.genre ends with an empty line: it is read (and counted) like any other line.
    assert counts["genres"] == 4


def test_ml_1m_and_ml_10m_are_told_apart_by_users_dat(spark, new_warehouse, tmp_path):
    one_m = tmp_path / "ml-1m"
    write_file(one_m, "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n")
    write_file(one_m, "movies.dat", "73::Misérables, Les (1995)::Drama|Musical\n",
               encoding="iso-8859-1")
    write_file(one_m, "users.dat", "1::F::1::10::48067\n")
    assert ingest.detect_layout(ingest.open_folder(spark, one_m)).name == "ml-1m"
    settings = new_warehouse()
    ingest.ingest_dataset(spark, settings, one_m)
    assert raw_lines(spark, "raw_movies") == [
        (1, "73::Misérables, Les (1995)::Drama|Musical", True, "ml-1m")]

    ten_m = tmp_path / "ml-10M100K"
    write_file(ten_m, "ratings.dat", "1::122::5::838985046\n1::185::4.5::838983525\n")
    write_file(ten_m, "movies.dat", "122::Boomerang (1992)::Comedy|Romance\n")
    write_file(ten_m, "tags.dat", "15::4973::excellent!::1215184630\n")
    assert ingest.detect_layout(ingest.open_folder(spark, ten_m)).name == "ml-10m"


def test_unknown_layout_message_names_the_known_layouts(tmp_path):
    with pytest.raises(ReelhouseError) as caught:
        ingest.detect_layout(ingest.open_folder(None, tmp_path))
    for name in ("ml-latest-small", "ml-100k", "ml-1m", "ml-10m", "ml-25m"):
        assert name in str(caught.value)


def test_the_same_folder_again_loads_only_new_files(spark, new_warehouse, tmp_path):
    from pipelines import delta_log

    folder = latest_folder(tmp_path)
    settings = new_warehouse()
    ingest.ingest_dataset(spark, settings, folder)
    version = delta_log.current_version(spark, settings, "raw_ratings")

    # Nothing new: nothing is written.
    assert ingest.ingest_dataset(spark, settings, folder)["ratings"] == 0
    assert delta_log.current_version(spark, settings, "raw_ratings") == version

    # A new ratings file dropped beside ratings.csv adds exactly its lines, in one commit.
    write_file(folder, "ratings-2024-06.csv",
               "userId,movieId,rating,timestamp\n3,1,2.5,1717200000\n3,3,4.0,1717200001\n")
    assert ingest.ingest_dataset(spark, settings, folder)["ratings"] == 2
    assert delta_log.current_version(spark, settings, "raw_ratings") == version + 1
    assert spark.sql("select count(*) from movielens.raw_ratings").first()[0] == 5
    new_lines = spark.sql("select line_number, raw_line from movielens.raw_ratings "
                          "where source_file like '%ratings-2024-06.csv' order by 1").collect()
    assert [tuple(r) for r in new_lines] == [(2, "3,1,2.5,1717200000"), (3, "3,3,4.0,1717200001")]
    files = spark.sql("select count(*) from movielens.ingest_files").first()[0]
    assert files == 5


def test_a_zip_is_read(spark, new_warehouse, tmp_path):
    """--data may name a MovieLens zip: it is unpacked (safely) and read like its folder. A
    truncated or hostile zip: tests/test_bad_input.py."""
    import zipfile

    source = latest_folder(tmp_path / "src")
    archive = tmp_path / "ml-latest-tiny.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in source.iterdir():
            zipped.write(path, f"ml-latest-tiny/{path.name}")
    settings = new_warehouse()
    assert ingest.ingest_dataset(spark, settings, archive) == {
        "ratings": 3, "movies": 3, "tags": 1, "links": 2, "users": 0, "genres": 0,
        "splits": 0}


def test_grouplens_own_splits_land_and_drive_ratings_split(spark, new_warehouse, tmp_path):
    """ml-100k's u1.base/u1.test and ua.base/ua.test (hand-written, u.data's format): every
    line is loaded or rejected with a reason, and split_method grouplens puts exactly the
    .test pairs in test. A split the folder does not ship fails the build in one sentence."""
    from pipelines import runner, sql_project

    folder = tmp_path / "ml-100k"
    ratings = [(u, m, 1 + (u + m) % 5, 881250949 + u * 10 + m) for u in (1, 2, 3)
               for m in (10, 20, 30, 40)]
    line = "{}\t{}\t{}\t{}\n".format
    write_file(folder, "u.data", "".join(line(*r) for r in ratings))
    write_file(folder, "u.item", "".join(f"{m}|Movie {m} (1995)|01-Jan-1995||http://x"
                                         + "|0" * 18 + "|1\n" for m in (10, 20, 30, 40)))
    u1_test = {(1, 10), (2, 20), (3, 30), (3, 40)}
    write_file(folder, "u1.test", "".join(line(*r) for r in ratings if r[:2] in u1_test)
               + "3\t40\t2\t881250989\n"  # the same pair again in the same file: a duplicate
               + "x\t10\t3\t881250949\n")  # a bad user id
    write_file(folder, "u1.base", "".join(line(*r) for r in ratings if r[:2] not in u1_test))
    ua_test = {(u, 10) for u in (1, 2, 3)}
    write_file(folder, "ua.test", "".join(line(*r) for r in ratings if r[:2] in ua_test))
    write_file(folder, "ua.base", "".join(line(*r) for r in ratings if r[:2] not in ua_test))
    settings = new_warehouse()
    counts = ingest.ingest_dataset(spark, settings, folder)
    assert counts["splits"] == 12 + 12 + 2

    def build(**split_vars) -> dict:
        project = sql_project.load_project(settings, folders=("models",),  # 2 bad of 26 lines
                                      cli_vars={"max_reject_share": 0.1, **split_vars})
        runner.build(spark, project, ["+ratings_split", "+ingest_summary", "+rejected_lines"])
        return {(r.user_id, r.movie_id): r.split
                for r in spark.table("movielens.ratings_split").collect()}

    for name, test_pairs in (("u1", u1_test), ("ua", ua_test)):
        split = build(split_method="grouplens", grouplens_split=name)
        assert split == {r[:2]: "test" if r[:2] in test_pairs else "train" for r in ratings}
    summary = {r.file_kind: r for r in spark.table("movielens.ingest_summary").collect()}
    assert (summary["splits"].loaded, summary["splits"].rejected,
            summary["splits"].lines_read) == (24, 2, 26)
    reasons = sorted(r.reason for r in spark.sql(
        "select reason from movielens.rejected_lines where file_kind = 'splits'").collect())
    assert reasons[0].startswith("duplicate split_line_key u1:test:3:40 of u1.test:")
    assert reasons[1] == "user_id is not a positive integer: x"
    with pytest.raises(ReelhouseError, match="split_method grouplens needs the split files"):
        build(split_method="grouplens", grouplens_split="u2")
