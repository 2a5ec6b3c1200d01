"""MovieLens ingest: find which GroupLens layout a folder holds and land every line of its files,
as it is, in raw Delta tables. All parsing and cleaning happens after this, in SQL models
(sql/models/staging), so a bad line is never lost here: it reaches a staging model, which gives
it a reject reason.

Every raw table has the same columns: dataset_format, source_file, line_number (1-based, as in
an editor, so a header is line 1), raw_line (decoded, line ending stripped), is_decodable,
ingested_at.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pipelines import catalog, progress
from pipelines.errors import ReelhouseError
from pipelines.settings import Settings

FILE_KINDS = ("ratings", "movies", "tags", "links", "users", "genres")
RAW_TABLES = {kind: f"raw_{kind}" for kind in FILE_KINDS}


@dataclass(frozen=True)
class DataFile:
    kind: str  # which raw table its lines go to
    name: str
    encoding: str  # 'UTF-8' or 'ISO-8859-1'
    header: str | None = None  # the exact first line, for CSV files that have one


@dataclass(frozen=True)
class Layout:
    """One of GroupLens' file layouts, as its README documents it."""

    name: str
    files: tuple[DataFile, ...]
    rating_scale: str

    def required(self) -> tuple[DataFile, ...]:
        return tuple(f for f in self.files if f.kind in ("ratings", "movies"))


LAYOUTS = (
    Layout("ml-latest", (
        DataFile("ratings", "ratings.csv", "UTF-8", "userId,movieId,rating,timestamp"),
        DataFile("movies", "movies.csv", "UTF-8", "movieId,title,genres"),
        DataFile("tags", "tags.csv", "UTF-8", "userId,movieId,tag,timestamp"),
        DataFile("links", "links.csv", "UTF-8", "movieId,imdbId,tmdbId"),
    ), "0.5-5.0 in half stars"),
    Layout("ml-100k", (
        DataFile("ratings", "u.data", "ISO-8859-1"),
        DataFile("movies", "u.item", "ISO-8859-1"),
        DataFile("users", "u.user", "ISO-8859-1"),
        DataFile("genres", "u.genre", "ISO-8859-1"),
    ), "1-5 whole stars"),
    Layout("ml-1m", (
        DataFile("ratings", "ratings.dat", "ISO-8859-1"),
        DataFile("movies", "movies.dat", "ISO-8859-1"),
        DataFile("users", "users.dat", "ISO-8859-1"),
    ), "1-5 whole stars"),
    Layout("ml-10m", (
        DataFile("ratings", "ratings.dat", "UTF-8"),
        DataFile("movies", "movies.dat", "UTF-8"),
        DataFile("tags", "tags.dat", "UTF-8"),
    ), "0.5-5.0 in half stars"),
)
KNOWN_LAYOUTS = ("ml-latest-small, ml-latest, ml-20m, ml-25m, ml-32m (ratings.csv + movies.csv); "
                 "ml-100k (u.data + u.item); ml-1m (ratings.dat + movies.dat + users.dat); "
                 "ml-10m (ratings.dat + movies.dat)")


def _find(data_dir: Path, name: str) -> Path | None:
    """A data file, also accepted gzip-compressed (Spark reads .gz transparently)."""
    for candidate in (data_dir / name, data_dir / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def detect_layout(data_dir: Path) -> Layout:
    """Which layout the folder holds, from the files present; a clear error when none fits."""
    if not data_dir.is_dir():
        raise ReelhouseError(f"{data_dir} is not a folder: pass --data with a MovieLens folder.")
    if _find(data_dir, "ratings.dat") and _find(data_dir, "movies.dat"):
        return LAYOUTS[2] if _find(data_dir, "users.dat") else LAYOUTS[3]
    for layout in LAYOUTS[:2]:
        if all(_find(data_dir, f.name) for f in layout.required()):
            return layout
    for layout in LAYOUTS:
        ratings, movies = layout.required()
        if _find(data_dir, movies.name) and not _find(data_dir, ratings.name):
            raise ReelhouseError(
                f"{data_dir} has {movies.name} but no {ratings.name}: a {layout.name} folder "
                "needs its ratings file.")
    raise ReelhouseError(f"{data_dir} holds no MovieLens layout reelhouse knows: {KNOWN_LAYOUTS}.")


def _first_line(path: Path) -> bytes:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            return handle.readline()
    except (OSError, EOFError) as exc:
        raise ReelhouseError(f"{path} cannot be read ({exc}): replace the file.") from exc


def check_header(path: Path, data_file: DataFile) -> None:
    """CSV files must start with GroupLens' header; anything else (a wrong delimiter, another
    file under this name) stops the load with the header we expected."""
    first = _first_line(path)
    if not first:
        raise ReelhouseError(f"{path} is empty: it should hold the {data_file.kind}.")
    if data_file.header is None:
        return
    text = first.decode("utf-8", errors="replace").lstrip("\ufeff").rstrip("\r\n").strip()
    if text != data_file.header:
        raise ReelhouseError(
            f"{path} line 1 is {text[:80]!r}, not the header {data_file.header!r}: is it a "
            "GroupLens file, comma-separated?")


def read_lines(spark, path: str, encoding: str, skip_header: bool):
    """Every line of one text file with its 1-based line number, decoded, in Spark.

    Spark numbers nothing, so: count the lines of each file split (one cheap aggregate), add
    the counts up in split order, and give each line its split's offset plus its place in the
    split. The split's byte offset comes from the hidden _metadata column, so the result does
    not depend on how Spark orders or packs the splits."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    lines = (spark.read.text(path)
             .select("value", F.col("_metadata.file_block_start").alias("block_start"))
             .withColumn("row_id", F.monotonically_increasing_id()))
    blocks = lines.groupBy("block_start").agg(F.count("*").alias("num_lines"),
                                              F.min("row_id").alias("first_row_id"))
    offsets = blocks.withColumn(
        "lines_before",
        F.coalesce(F.sum("num_lines").over(
            Window.orderBy("block_start").rowsBetween(Window.unboundedPreceding, -1)),
            F.lit(0)))
    raw = F.col("value").cast("binary")
    if encoding == "UTF-8":
        decoded = F.regexp_replace(F.expr("make_valid_utf8(value)"), "^\ufeff", "")
        decodable = F.expr("is_valid_utf8(value)")
    else:  # single-byte encodings: every byte sequence decodes
        decoded = F.decode(raw, encoding)
        decodable = F.lit(True)
    numbered = (lines.join(F.broadcast(offsets.select("block_start", "first_row_id",
                                                      "lines_before")), "block_start")
                .select(
                    (F.col("lines_before") + F.col("row_id") - F.col("first_row_id") + 1)
                    .alias("line_number"),
                    decoded.alias("raw_line"),
                    decodable.alias("is_decodable")))
    if skip_header:
        numbered = numbered.where("line_number > 1")
    return numbered


RAW_SCHEMA = ("dataset_format string, source_file string, line_number bigint, raw_line string, "
              "is_decodable boolean, ingested_at timestamp")


def ingest_dataset(spark, settings: Settings, data_dir: str | Path) -> dict:
    """Land a MovieLens folder in the raw tables (each replaced in one Delta commit) and record
    the files in ingest_files. Returns {kind: data lines read}."""
    from pyspark.sql import functions as F

    data_dir = Path(data_dir).expanduser().resolve()
    layout = detect_layout(data_dir)
    ingested_at = datetime.now(UTC).replace(tzinfo=None)
    progress.say(f"ingesting {data_dir} as {layout.name} (ratings on the {layout.rating_scale} "
                 "scale)")
    lines_read: dict[str, int] = {}
    files = []
    for kind in FILE_KINDS:
        data_file = next((f for f in layout.files if f.kind == kind), None)
        path = _find(data_dir, data_file.name) if data_file else None
        if path is None:
            df = spark.createDataFrame([], RAW_SCHEMA)
        else:
            check_header(path, data_file)
            df = (read_lines(spark, str(path), data_file.encoding, data_file.header is not None)
                  .select(F.lit(layout.name).alias("dataset_format"),
                          F.lit(str(path)).alias("source_file"),
                          "line_number", "raw_line", "is_decodable",
                          F.lit(ingested_at).alias("ingested_at")))
        with progress.step(f"raw {kind:<7} <- {path.name if path else '(no file)'}") as info:
            try:
                catalog.replace_table(spark, settings, df, RAW_TABLES[kind],
                                      comment=f"Every line of the {kind} file, as read.")
            except Exception as exc:
                if isinstance(exc, ReelhouseError):
                    raise
                raise ReelhouseError(
                    f"{path} could not be read ({_first_error_line(exc)}): the file may be "
                    "truncated or damaged; replace it.") from exc
            count = catalog.rows_in_last_commit(spark, settings, RAW_TABLES[kind]) or 0
            info["result"] = f"{count:,} lines"
        lines_read[kind] = count
        if path is not None:
            stat = os.stat(path)
            files.append((layout.name, kind, str(path), stat.st_size, count, ingested_at))
    if lines_read["ratings"] == 0:
        raise ReelhouseError(f"The ratings file in {data_dir} has no ratings after its header.")
    files_df = spark.createDataFrame(
        files, "dataset_format string, file_kind string, source_file string, size_bytes bigint, "
               "lines_read bigint, ingested_at timestamp")
    catalog.replace_table(spark, settings, files_df, "ingest_files",
                          comment="The files the last ingest read, with their data line counts.")
    return lines_read


def _first_error_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__
