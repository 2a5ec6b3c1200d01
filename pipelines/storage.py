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


def list_files(spark, location: str) -> dict[str, tuple[int, int]] | None:
    """The files directly in a folder: {name: (size in bytes, modified at in epoch ms)}; None
    if there is no such folder."""
    folder, fs = fs_path(spark, location)
    if not fs.exists(folder) or not fs.getFileStatus(folder).isDirectory():
        return None
    return {status.getPath().getName(): (status.getLen(), status.getModificationTime())
            for status in fs.listStatus(folder) if status.isFile()}


def read_head(spark, location: str, num_bytes: int) -> bytes:
    """Up to the first num_bytes of a file, as stored (no decompression)."""
    jvm = spark.sparkContext._jvm
    path, fs = fs_path(spark, location)
    stream = fs.open(path)
    try:
        bounded = jvm.org.apache.commons.io.input.BoundedInputStream(stream, num_bytes)
        return bytes(jvm.org.apache.commons.io.IOUtils.toByteArray(bounded))
    finally:
        stream.close()


def read_text(spark, location: str) -> str | None:
    """A file's text, or None if there is no such file."""
    path, fs = fs_path(spark, location)
    return read_file(spark, path) if fs.exists(path) else None


# Hadoop's option for "create only if absent" (Options.CreateFileOptionKeys): S3A sends the PUT
# with If-None-Match: *, so the store refuses a second writer atomically (HADOOP-19256).
CONDITIONAL_CREATE = "fs.option.create.conditional.overwrite"


def create_new_file(spark, location: str, text: str) -> bool:
    """Write a file unless one is there already; False if one was. Atomic where the file system
    makes it so: HDFS's create, and object storage's conditional PUT. (A local path: use
    O_EXCL instead, as lock.py does; Hadoop's local file system checks, then writes.)"""
    from py4j.protocol import Py4JJavaError

    path, fs = fs_path(spark, location)
    try:
        stream = fs.createFile(path).overwrite(False).opt(CONDITIONAL_CREATE, True).build()
        try:
            stream.write(bytearray(text.encode("utf-8")))
        finally:
            stream.close()  # where an object store's PUT happens, and is refused
    except Py4JJavaError as exc:
        java = exc.java_exception
        name, message = java.getClass().getName(), str(java.getMessage() or "")
        if (name.endswith("FileAlreadyExistsException") or "412" in message
                or "PreconditionFailed" in message or "Precondition Failed" in message):
            return False
        raise
    return True


def delete_path(spark, location: str) -> None:
    path, fs = fs_path(spark, location)
    if fs.exists(path):
        fs.delete(path, True)
