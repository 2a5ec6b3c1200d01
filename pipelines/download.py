"""Fetch a named MovieLens release from GroupLens, check its md5 and unpack it safely."""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import shutil
import stat
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from pipelines.errors import ReelhouseError

DEFAULT_BASE_URL = "https://files.grouplens.org/datasets/movielens"
BASE_URL_ENV = "REELHOUSE_MOVIELENS_URL"
MANUAL_HINT = (
    "or download it by hand from https://grouplens.org/datasets/movielens/, unzip it "
    "and use `reelhouse ingest --data DIR`"
)
_CHUNK_BYTES = 1 << 20
_MD5_MAX_BYTES = 4096

log = logging.getLogger(__name__)


class Release(NamedTuple):
    zip_name: str  # file name under the base URL
    folder: str  # top-level folder inside the zip
    files: tuple[str, ...]  # files that must be in that folder for it to count as complete


_LATEST_CSVS = ("ratings.csv", "movies.csv", "tags.csv", "links.csv")
RELEASES = {
    "ml-latest-small": Release("ml-latest-small.zip", "ml-latest-small", _LATEST_CSVS),
    "ml-latest": Release("ml-latest.zip", "ml-latest", _LATEST_CSVS),
    "ml-100k": Release("ml-100k.zip", "ml-100k", ("u.data", "u.item", "u.user")),
    "ml-1m": Release("ml-1m.zip", "ml-1m", ("ratings.dat", "movies.dat", "users.dat")),
    # The only release whose folder is not named after the zip.
    "ml-10m": Release("ml-10m.zip", "ml-10M100K", ("ratings.dat", "movies.dat", "tags.dat")),
    "ml-20m": Release("ml-20m.zip", "ml-20m", _LATEST_CSVS),
    "ml-25m": Release("ml-25m.zip", "ml-25m", _LATEST_CSVS),
    "ml-32m": Release("ml-32m.zip", "ml-32m", _LATEST_CSVS),
}


class DownloadError(ReelhouseError):
    """A download or unpack that failed; the message says what failed and what to do."""


def base_url_from_env() -> str:
    """The GroupLens base URL, or the mirror named by $REELHOUSE_MOVIELENS_URL."""
    return os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL


def parse_md5(text: str) -> str:
    """The hex digest in a GroupLens .md5 file, either `MD5 (f) = hex` or `hex  f` form."""
    match = re.search(r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{32}(?![0-9A-Fa-f])", text)
    if match is None:
        raise DownloadError(
            f"The checksum file holds no md5 digest ({text[:80]!r}); {MANUAL_HINT}."
        )
    return match.group(0).lower()


def is_complete(folder: Path, release: Release) -> bool:
    """Whether `folder` holds every file the release needs."""
    return folder.is_dir() and all((folder / name).is_file() for name in release.files)


def download_dataset(
    name,
    dest_dir,
    base_url=DEFAULT_BASE_URL,
    progress=None,
    timeout=60,
    *,
    force=False,
) -> Path:
    """Download MovieLens release `name` into `dest_dir` and return its extracted folder.

    Skips the download when the folder is already complete, unless `force`. The zip is
    checked against the md5 GroupLens publishes beside it, and an archive with an unsafe
    entry (absolute path, drive letter, `..` escaping, symlink) is refused whole.
    `progress(bytes_done, bytes_total_or_None)` is called as the zip arrives. `base_url`
    may point at a mirror laid out like GroupLens'; the CLI passes $REELHOUSE_MOVIELENS_URL
    here (see `base_url_from_env`), and None means that too. Raises ValueError for an unknown
    name and DownloadError for anything that goes wrong on the way.
    """
    release = RELEASES.get(name)
    if release is None:
        raise ValueError(f"unknown MovieLens release {name!r}; known: {', '.join(RELEASES)}")
    dest = Path(dest_dir)
    target = dest / release.folder
    if not force and is_complete(target, release):
        return target
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"Could not create {dest} ({exc.strerror or exc}).") from None

    url = f"{(base_url or base_url_from_env()).rstrip('/')}/{release.zip_name}"
    # The md5 first: it is tiny, so a dead network fails before the big download starts.
    expected = _fetch_md5(f"{url}.md5", timeout)
    fd, part_name = tempfile.mkstemp(prefix=f".{release.zip_name}.", suffix=".part", dir=dest)
    part = Path(part_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            actual = _fetch(url, handle, progress, timeout)
        if expected is not None and actual != expected:
            raise DownloadError(
                f"The downloaded {release.zip_name} does not match its published md5 "
                f"({actual} != {expected}); run the download again, {MANUAL_HINT}."
            )
        _extract(part, dest, release)
    finally:
        part.unlink(missing_ok=True)
    return target


def _network_error(url: str, exc: BaseException) -> DownloadError:
    if isinstance(exc, urllib.error.HTTPError):
        what = f"the server answered HTTP {exc.code} {exc.reason}"
    elif isinstance(exc, urllib.error.URLError):
        what = f"{exc.reason}"
    else:
        what = f"{exc}" or type(exc).__name__
    return DownloadError(
        f"Could not download {url} ({what}); check your internet connection and the URL, "
        f"{MANUAL_HINT}."
    )


def _open(url: str, timeout: float):
    try:
        return urllib.request.urlopen(url, timeout=timeout)
    except ValueError as exc:
        # urllib's answer to a malformed base URL.
        raise DownloadError(f"{url} is not a valid download URL ({exc}).") from None


def _fetch_md5(url: str, timeout: float) -> str | None:
    """The published digest, or None when the server has no .md5 for this zip."""
    try:
        with _open(url, timeout) as response:
            text = response.read(_MD5_MAX_BYTES).decode("ascii", errors="replace")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            # A mirror may not carry the .md5 files: the zip's own CRCs still catch damage.
            log.warning("no checksum at %s; relying on the zip's own CRC checks", url)
            return None
        raise _network_error(url, exc) from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        raise _network_error(url, exc) from None
    return parse_md5(text)


def _fetch(url: str, handle, progress: Callable | None, timeout: float) -> str:
    """Stream `url` into `handle` and return the md5 of what arrived."""
    digest = hashlib.md5(usedforsecurity=False)
    done = 0
    try:
        with _open(url, timeout) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            if progress is not None:
                progress(0, total)
            while chunk := response.read(_CHUNK_BYTES):
                try:
                    handle.write(chunk)
                except OSError as exc:
                    raise DownloadError(
                        f"Could not write the download to disk ({exc.strerror or exc}); "
                        "free some space or choose another folder."
                    ) from None
                digest.update(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        raise _network_error(url, exc) from None
    if total is not None and done != total:
        raise _network_error(url, ConnectionError(f"got {done} of {total} bytes"))
    return digest.hexdigest()


def _unsafe_reason(info: zipfile.ZipInfo) -> str | None:
    """Why extracting this entry could write outside the destination, or None."""
    if stat.S_ISLNK(info.external_attr >> 16):
        return "it is a symbolic link"
    # Windows tools sometimes write backslashes; treat them as separators too.
    name = info.filename.replace("\\", "/")
    if name.startswith("/"):
        return "it has an absolute path"
    if re.match(r"[A-Za-z]:", name):
        return "it has a drive letter"
    depth = 0
    for part in PurePosixPath(name).parts:
        if part == "..":
            depth -= 1
            if depth < 0:
                return "its `..` would land outside the destination"
        elif part != ".":
            depth += 1
    return None


def _extract(archive_path: Path, dest: Path, release: Release) -> None:
    """Unpack into a staging folder, then move the release folder into place."""
    damaged = (
        f"The downloaded {release.zip_name} is damaged (truncated or corrupt); "
        f"run the download again, {MANUAL_HINT}."
    )
    try:
        with zipfile.ZipFile(archive_path) as archive:
            members = archive.infolist()
            # Check every entry before writing anything: an unsafe archive is refused whole.
            for info in members:
                reason = _unsafe_reason(info)
                if reason is not None:
                    raise DownloadError(
                        f"Refusing to unpack {release.zip_name}: entry {info.filename!r} is "
                        f"unsafe because {reason}; nothing was extracted."
                    )
            staging = Path(tempfile.mkdtemp(prefix=".reelhouse-unpack-", dir=dest))
            try:
                for info in members:
                    # Reading each member verifies its CRC, so corruption surfaces here.
                    archive.extract(info, staging)
                unpacked = staging / release.folder
                if not is_complete(unpacked, release):
                    raise DownloadError(
                        f"{release.zip_name} has no complete {release.folder}/ folder "
                        f"(expected {', '.join(release.files)}); {MANUAL_HINT}."
                    )
                target = dest / release.folder
                if target.is_symlink() or target.is_file():
                    target.unlink()
                elif target.exists():
                    shutil.rmtree(target)
                # A rename, so nobody sees a half-written release folder.
                os.replace(unpacked, target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise DownloadError(damaged) from exc
    except OSError as exc:
        raise DownloadError(
            f"Could not unpack {release.zip_name} into {dest} ({exc.strerror or exc}); "
            "free some space or choose another folder."
        ) from None


def unpack_zip(archive_path: Path, dest: Path) -> Path:
    """Safely unpack a MovieLens zip a user points `--data` at; returns the folder holding its
    files (the zip's single top folder, if it has one). Unsafe entries refuse the whole archive
    and a truncated or corrupt zip is a one-sentence error, as for downloads."""
    archive_path = Path(archive_path)
    try:
        with zipfile.ZipFile(archive_path) as archive:
            for info in archive.infolist():
                reason = _unsafe_reason(info)
                if reason is not None:
                    raise DownloadError(
                        f"Refusing to unpack {archive_path.name}: entry {info.filename!r} is "
                        f"unsafe because {reason}; nothing was extracted.")
            staging = Path(tempfile.mkdtemp(prefix=".reelhouse-unpack-", dir=dest.parent))
            try:
                archive.extractall(staging)  # reading each member checks its CRC
                if dest.exists():
                    shutil.rmtree(dest)
                os.replace(staging, dest)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise DownloadError(
            f"{archive_path} is damaged (truncated or corrupt): download it again.") from exc
    entries = [p for p in dest.iterdir() if not p.name.startswith((".", "__MACOSX"))]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else dest
