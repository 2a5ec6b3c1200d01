"""Files on the warehouse's file system (local, s3a://, hdfs://, abfss:// alike), through
Hadoop's FileSystem so every scheme behaves the same."""

from __future__ import annotations

from pipelines import naming
from pipelines.settings import Settings


def fs_path(spark, location: str):
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(location)
    return path, path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())


def list_tables_on_storage(spark, settings: Settings) -> list[str]:
    """Names of the Delta tables under <warehouse>/<schema>, read from storage."""
    root, fs = fs_path(spark, f"{settings.warehouse}/{settings.schema}")
    if not fs.exists(root):
        return []
    jvm = spark.sparkContext._jvm
    names = []
    for status in fs.listStatus(root):
        name = status.getPath().getName()
        if status.isDirectory() and naming.IDENTIFIER.match(name):
            # A table exists once its first commit does: a writer creates _delta_log before it
            # commits version 0, and a name registered in between would fail to resolve.
            commits = fs.globStatus(jvm.org.apache.hadoop.fs.Path(status.getPath(),
                                                                  "_delta_log/0*"))
            if commits:
                names.append(name)
    return sorted(names)


def read_file(spark, path) -> str:
    fs = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    stream = fs.open(path)
    try:
        data = spark.sparkContext._jvm.org.apache.commons.io.IOUtils.toByteArray(stream)
    finally:
        stream.close()
    return bytes(data).decode("utf-8")


def storage_listing(spark, settings: Settings) -> tuple[frozenset, frozenset]:
    """What a catalog refresh depends on, in two folder listings and no Spark job: the table
    folders, and each stored view file's name, size and time. While it is unchanged, a
    refresh has nothing to do (a table's new versions need none: it is registered by
    location). Folders are named as list_tables_on_storage names tables, and one whose first
    commit has not landed is listed too: the caller looks again until it is a table."""
    root, fs = fs_path(spark, f"{settings.warehouse}/{settings.schema}")
    views, _ = fs_path(spark, settings.views_location)
    folders = frozenset(name for status in (fs.listStatus(root) if fs.exists(root) else [])
                        if status.isDirectory()
                        and naming.IDENTIFIER.match(name := status.getPath().getName()))
    files = frozenset((status.getPath().getName(), status.getLen(), status.getModificationTime())
                      for status in (fs.listStatus(views) if fs.exists(views) else []))
    return folders - {views.getName()}, files


def read_text_files(spark, location: str) -> dict[str, str]:
    folder, fs = fs_path(spark, location)
    if not fs.exists(folder):
        return {}
    return {status.getPath().getName()[:-4]: read_file(spark, status.getPath())
            for status in fs.listStatus(folder) if status.getPath().getName().endswith(".sql")}


def write_text_file(spark, location: str, text: str) -> None:
    path, fs = fs_path(spark, location)
    stream = fs.create(path, True)
    try:
        stream.write(bytearray(text.encode("utf-8")))
    finally:
        stream.close()


def delete_path(spark, location: str) -> None:
    path, fs = fs_path(spark, location)
    if fs.exists(path):
        fs.delete(path, True)
