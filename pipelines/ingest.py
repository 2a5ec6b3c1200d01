"""MovieLens ingest: find which GroupLens layout a folder holds and land every line of its files,
as it is, in raw Delta tables. All parsing and cleaning happens after this, in SQL models
(sql/models/staging), so a bad line is never lost here: it reaches a staging model, which gives
it a reject reason.

Every raw table has the same columns: dataset_format, source_file, line_number (1-based, as in
an editor, so a header is line 1), raw_line (decoded, line ending stripped), is_decodable,
ingested_at.
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pipelines import naming, progress, registration, writes
from pipelines.errors import ReelhouseError, spark_message
from pipelines.settings import Settings, default_jars_dir

FILE_KINDS = ("ratings", "movies", "tags", "links", "users", "genres", "splits")
# ml-100k ships GroupLens' own train/test splits of u.data: u1-u5 (five disjoint 20% test
# sets, for 5-fold cross-validation) and ua/ub (exactly 10 test ratings per user); README.
GROUPLENS_SPLITS = ("u1", "u2", "u3", "u4", "u5", "ua", "ub")
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
        *(DataFile("splits", f"{name}.{part}", "ISO-8859-1")
          for name in GROUPLENS_SPLITS for part in ("base", "test")),
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


@dataclass(frozen=True)
class Folder:
    """A dataset folder's files, listed once: on the local disk, or on any Hadoop file system
    (`--data s3a://bucket/ml-latest-small`), where Spark's executors read them directly."""

    location: str  # an absolute local path or a URI
    files: dict[str, tuple[int, datetime]]  # name: (size in bytes, modified at, UTC)
    spark: object = None  # the session whose Hadoop file system reaches a URI

    def path(self, name: str) -> str:
        return f"{self.location}/{name}"

    def find(self, name: str) -> str | None:
        """A data file's name, also accepted gzip-compressed (Spark reads .gz transparently)."""
        return next((n for n in (name, f"{name}.gz") if n in self.files), None)

    def first_line(self, name: str) -> bytes:
        try:
            if self.spark is None:
                opener = gzip.open if name.endswith(".gz") else open
                with opener(self.path(name), "rb") as handle:
                    return handle.readline()
            from pipelines import storage

            head = storage.read_head(self.spark, self.path(name), HEADER_BYTES)
            if name.endswith(".gz"):
                head = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, HEADER_BYTES)
            return head.split(b"\n", 1)[0] + (b"\n" if b"\n" in head else b"")
        except (OSError, EOFError, zlib.error) as exc:
            raise ReelhouseError(f"{self.path(name)} cannot be read ({exc}): replace the "
                                 "file.") from exc


HEADER_BYTES = 1 << 16  # read to find a file's first line on object storage


def open_folder(spark, data_dir: str | Path) -> Folder:
    """The dataset folder at a local path (a .zip is unpacked first) or a URI, listed."""
    from pipelines.settings import is_uri

    if is_uri(str(data_dir)):
        from pipelines import storage

        location = str(data_dir).rstrip("/")
        listing = storage.list_files(spark, location)
        if listing is None:
            raise ReelhouseError(f"{location} is not a folder: pass --data with a MovieLens "
                                 "folder.")
        return Folder(location, {name: (size, datetime.fromtimestamp(ms / 1000, UTC)
                                        .replace(tzinfo=None))
                                 for name, (size, ms) in listing.items()}, spark)
    folder = unpacked(Path(data_dir).expanduser().resolve())
    if not folder.is_dir():
        raise ReelhouseError(f"{folder} is not a folder: pass --data with a MovieLens folder.")
    files = {}
    for entry in folder.iterdir():
        if entry.is_file():
            stat = entry.stat()
            files[entry.name] = (stat.st_size, datetime.fromtimestamp(stat.st_mtime, UTC)
                                 .replace(tzinfo=None))
    return Folder(str(folder), files)


def unpacked(data_path: Path) -> Path:
    """A folder to read: the path itself, or a zip's contents unpacked (safely, once per zip
    version) into the cache, so its file paths stay the same from run to run."""
    if data_path.is_file() and data_path.suffix.lower() == ".zip":
        from pipelines.download import unpack_zip

        stat = data_path.stat()
        key = hashlib.sha1(f"{data_path}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()
        target = default_jars_dir().parent / "unzipped" / f"{data_path.stem}-{key[:10]}"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            return unpack_zip(data_path, target)
        entries = [p for p in target.iterdir() if not p.name.startswith((".", "__MACOSX"))]
        return entries[0] if len(entries) == 1 and entries[0].is_dir() else target
    return data_path


def detect_layout(folder: Folder) -> Layout:
    """Which layout the folder holds, from the files present; a clear error when none fits."""
    if folder.find("ratings.dat") and folder.find("movies.dat"):
        return LAYOUTS[2] if folder.find("users.dat") else LAYOUTS[3]
    for layout in LAYOUTS[:2]:
        if all(folder.find(f.name) for f in layout.required()):
            return layout
    for layout in LAYOUTS:
        ratings, movies = layout.required()
        if folder.find(movies.name) and not folder.find(ratings.name):
            raise ReelhouseError(
                f"{folder.location} has {movies.name} but no {ratings.name}: a {layout.name} "
                "folder needs its ratings file.")
    raise ReelhouseError(f"{folder.location} holds no MovieLens layout reelhouse knows: "
                         f"{KNOWN_LAYOUTS}.")


def check_header(folder: Folder, name: str, data_file: DataFile) -> None:
    """CSV files must start with GroupLens' header; anything else (a wrong delimiter, another
    file under this name) stops the load with the header we expected."""
    first = folder.first_line(name)
    if not first:
        raise ReelhouseError(f"{folder.path(name)} is empty: it should hold the "
                             f"{data_file.kind}.")
    if data_file.header is None:
        return
    text = first.decode("utf-8", errors="replace").lstrip("\ufeff").rstrip("\r\n").strip()
    if text != data_file.header:
        raise ReelhouseError(
            f"{folder.path(name)} line 1 is {text[:80]!r}, not the header {data_file.header!r}: "
            "is it a GroupLens file, comma-separated?")


def read_lines(spark, path: str, encoding: str, skip_header: bool):
    """Every line of one text file with its 1-based line number, decoded, in Spark; returns
    (DataFrame, number of data lines).

    Spark numbers nothing, so: count the lines of each file split (one small aggregate, the only
    extra pass), add the counts up in split order, and give each line its split's offset plus
    its place in the split. The split's byte offset comes from the hidden _metadata column, so
    the numbering does not depend on how Spark orders or packs the splits."""
    from pyspark.sql import functions as F

    lines = (spark.read.text(path)
             .select("value", F.col("_metadata.file_block_start").alias("block_start"))
             .withColumn("row_id", F.monotonically_increasing_id()))
    blocks = sorted(tuple(row) for row in lines.groupBy("block_start").agg(
        F.count("*"), F.min("row_id")).collect())
    offsets, lines_before = [], 0
    for block_start, num_lines, first_row_id in blocks:
        offsets.append((block_start, first_row_id, lines_before))
        lines_before += num_lines
    offsets_df = naming.literal_rows(
        spark, "block_start bigint, first_row_id bigint, lines_before bigint", offsets)
    if encoding == "UTF-8":
        decoded = F.regexp_replace(F.expr("make_valid_utf8(value)"), "^\ufeff", "")
        decodable = F.expr("is_valid_utf8(value)")
    else:  # single-byte encodings: every byte sequence decodes
        decoded = F.decode(F.col("value").cast("binary"), encoding)
        decodable = F.lit(True)
    numbered = (lines.join(F.broadcast(offsets_df), "block_start")
                .select(
                    (F.col("lines_before") + F.col("row_id") - F.col("first_row_id") + 1)
                    .alias("line_number"),
                    decoded.alias("raw_line"),
                    decodable.alias("is_decodable")))
    if skip_header:
        numbered = numbered.where("line_number > 1")
        lines_before = max(lines_before - 1, 0)
    return numbered, lines_before


RAW_SCHEMA = ("dataset_format string, source_file string, line_number bigint, raw_line string, "
              "is_decodable boolean, ingested_at timestamp")
FILES_SCHEMA = ("dataset_dir string, dataset_format string, file_kind string, source_file string, "
                "size_bytes bigint, modified_at timestamp, lines_read bigint, "
                "ingested_at timestamp")


def data_files(folder: Folder, layout: Layout) -> list[tuple[DataFile, str]]:
    """The layout's files present in the folder (by name), plus extra rating files dropped
    beside the main one (e.g. ratings-2024-06.csv next to ratings.csv): each is loaded once,
    when new."""
    found = []
    for data_file in layout.files:
        main = folder.find(data_file.name)
        if main is None:
            continue
        found.append((data_file, main))
        if data_file.kind == "ratings":
            stem, dot, suffix = data_file.name.partition(".")
            for pattern in (f"{stem}*.{suffix}", f"{stem}*.{suffix}.gz"):
                for extra in sorted(fnmatch.filter(folder.files, pattern)):
                    if extra != main and (data_file, extra) not in found:
                        found.append((data_file, extra))
    return found


def _previous_files(spark, settings: Settings, data_dir: str) -> dict[str, tuple]:
    """What the last ingest of this same folder read: {source_file: (size, mtime)}. Empty when
    the warehouse last held another folder, which makes this ingest a full refresh."""
    if not registration.table_exists(spark, settings, "ingest_files"):
        return {}
    rows = spark.sql(f"select dataset_dir, source_file, size_bytes, modified_at from "
                     f"{naming.qualified(settings, 'ingest_files')}").collect()
    if any(row.dataset_dir != data_dir for row in rows):
        return {}
    return {row.source_file: (row.size_bytes, row.modified_at) for row in rows}


def ingest_dataset(spark, settings: Settings, data_dir: str | Path) -> dict:
    """Land a MovieLens folder in the raw tables and record its files in ingest_files.

    A folder the warehouse has not seen replaces the raw tables (one Delta commit each). The
    same folder again loads only files that are new or changed since (by size and modification
    time), MERGEd by (source_file, line_number) in one commit per table; with nothing new,
    nothing is written, so every downstream table stays as it is. Returns {kind: lines read}."""
    from pyspark.sql import functions as F

    folder = open_folder(spark, data_dir)
    data_dir = folder.location
    layout = detect_layout(folder)
    ingested_at = datetime.now(UTC).replace(tzinfo=None)
    previous = _previous_files(spark, settings, data_dir)
    full_refresh = not previous or not all(
        registration.table_exists(spark, settings, t) for t in RAW_TABLES.values())
    progress.say(f"ingesting {data_dir} as {layout.name} (ratings on the {layout.rating_scale} "
                 f"scale){'' if full_refresh else ', new or changed files only'}")
    lines_read = dict.fromkeys(FILE_KINDS, 0)
    file_rows = []
    # First read every file (each read counts its lines, so a damaged file fails here), then
    # write: a bad file stops the ingest before any table has changed.
    to_write = {}
    for kind in FILE_KINDS:
        frames, changed = [], []
        for data_file, name in data_files(folder, layout):
            if data_file.kind != kind:
                continue
            path, (size, modified_at) = folder.path(name), folder.files[name]
            if not full_refresh and previous.get(path) == (size, modified_at):
                continue
            check_header(folder, name, data_file)
            try:
                lines, count = read_lines(spark, path, data_file.encoding,
                                          data_file.header is not None)
            except Exception as exc:  # Spark met a damaged file (e.g. a truncated gzip)
                raise _unreadable([path], exc) from exc
            frames.append(lines.select(
                F.lit(layout.name).alias("dataset_format"), F.lit(path).alias("source_file"),
                "line_number", "raw_line", "is_decodable", F.lit(ingested_at).alias("ingested_at")))
            changed.append(path)
            lines_read[kind] += count
            file_rows.append((data_dir, layout.name, kind, path, size, modified_at, count,
                              ingested_at))
        if full_refresh or frames:
            to_write[kind] = (frames, changed)
    if full_refresh and lines_read["ratings"] == 0:
        raise ReelhouseError(f"The ratings file in {data_dir} has no ratings after its header.")
    for kind, (frames, changed) in to_write.items():
        df = frames[0] if frames else naming.literal_rows(spark, RAW_SCHEMA, [])
        for frame in frames[1:]:
            df = df.unionByName(frame)
        names = ", ".join(p.rsplit("/", 1)[-1] for p in changed)
        label = f"raw {kind:<7} <- {names or '(no file)'}"
        with progress.step(label) as info:
            try:
                if full_refresh:
                    writes.replace_table(spark, settings, df, RAW_TABLES[kind],
                                          comment=f"Every line of the {kind} files, as read.")
                else:
                    _merge_lines(spark, settings, df, RAW_TABLES[kind], changed)
            except ReelhouseError:
                raise
            except Exception as exc:
                raise _unreadable(changed, exc) from exc
            info["result"] = f"{lines_read[kind]:,} lines"
    if file_rows or full_refresh:
        files_df = naming.literal_rows(spark, FILES_SCHEMA, file_rows)
        comment = "Every file ingested, with its size, time and data line count."
        if full_refresh:
            writes.replace_table(spark, settings, files_df, "ingest_files", comment=comment)
        else:
            writes.merge_into(spark, settings, files_df, "ingest_files", ["source_file"])
    if not file_rows:
        progress.say("no new or changed files: the raw tables are unchanged")
    return lines_read


def _merge_lines(spark, settings: Settings, df, table: str, files: list[str]) -> None:
    """New and changed files into a raw table in one commit: lines keyed by (file, number);
    lines a changed file no longer has are deleted."""
    source_view = f"__reelhouse_lines_{table}"
    df.createOrReplaceTempView(source_view)
    listed = ", ".join(naming.sql_string(f) for f in files)
    try:
        spark.sql(
            f"merge into {naming.qualified(settings, table)} as target "
            f"using {source_view} as source "
            "on target.source_file = source.source_file "
            "and target.line_number = source.line_number "
            "when matched and not (target.raw_line <=> source.raw_line) then update set * "
            "when not matched then insert * "
            f"when not matched by source and target.source_file in ({listed}) then delete")
    finally:
        spark.catalog.dropTempView(source_view)


def _unreadable(paths: list[str], exc: Exception) -> ReelhouseError:
    # Py4J's first line ("An error occurred while calling o38.collectToPython.") says nothing;
    # the innermost Java exception says what broke ("java.io.EOFException: Unexpected end of
    # input stream" for a truncated gzip).
    cause = getattr(exc, "java_exception", None)
    try:
        while cause is not None and cause.getCause() is not None:
            cause = cause.getCause()
        text = str(cause.toString()) if cause is not None else spark_message(exc)
    except Exception:  # the JVM object is gone: Spark's own line will do
        text = spark_message(exc)
    reason = text.strip().splitlines()[0][:200] if text.strip() else spark_message(exc, 200)
    return ReelhouseError(f"{', '.join(paths)} could not be read ({reason}): the file may be "
                          "truncated or damaged; replace it.")
