"""Downloading MovieLens releases, against a real local HTTP server (no internet)."""

from __future__ import annotations

import functools
import hashlib
import io
import socket
import stat
import threading
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pipelines.download import (
    BASE_URL_ENV,
    RELEASES,
    DownloadError,
    download_dataset,
    parse_md5,
)

SMALL_FILES = {
    "ml-latest-small/ratings.csv": "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n",
    "ml-latest-small/movies.csv": 'movieId,title,genres\n1,"Hills, Silent (1994)",Drama\n',
    "ml-latest-small/tags.csv": "userId,movieId,tag,timestamp\n1,1,funny,1445714994\n",
    "ml-latest-small/links.csv": "movieId,imdbId,tmdbId\n1,0114709,862\n",
    "ml-latest-small/README.txt": "Summary\n",
}


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """A real HTTP server on 127.0.0.1 serving tmp_path/www; yields (base_url, root)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    # A short poll interval keeps shutdown (and so each test) fast.
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture
def dest(tmp_path):
    return tmp_path / "data"


def _zip(files: dict[str, str | bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, content in files.items():
            if isinstance(content, zipfile.ZipInfo):
                archive.writestr(content, b"target")
            else:
                archive.writestr(zipfile.ZipInfo(name), content)
    return buffer.getvalue()


def _publish(root: Path, zip_name: str, data: bytes, md5: str | None = None, style="bsd"):
    """Put a zip and its .md5 on the server, the way GroupLens lays them out."""
    (root / zip_name).write_bytes(data)
    digest = md5 or hashlib.md5(data).hexdigest()
    text = f"MD5 ({zip_name}) = {digest}\n" if style == "bsd" else f"{digest}  {zip_name}\n"
    (root / f"{zip_name}.md5").write_text(text)


def _dead_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _leftovers(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


def test_downloads_verifies_and_extracts(server, dest):
    base_url, root = server
    data = _zip(SMALL_FILES)
    _publish(root, "ml-latest-small.zip", data)
    calls = []
    folder = download_dataset(
        "ml-latest-small",
        dest,
        base_url=base_url,
        timeout=5,
        progress=lambda d, t: calls.append((d, t)),
    )
    assert folder == dest / "ml-latest-small"
    for name, content in SMALL_FILES.items():
        assert (dest / name).read_text() == content
    # Only the release folder is left: no .part file, no staging folder.
    assert [p.name for p in dest.iterdir()] == ["ml-latest-small"]
    assert calls[0] == (0, len(data))
    assert calls[-1] == (len(data), len(data))


def test_md5sum_style_checksum_is_accepted(server, dest):
    base_url, root = server
    _publish(root, "ml-latest-small.zip", _zip(SMALL_FILES), style="md5sum")
    assert download_dataset("ml-latest-small", dest, base_url=base_url, timeout=5).is_dir()


def test_parse_md5_reads_both_grouplens_forms():
    digest = "8d0bd84a4e2bbcc7c8a0a2bb6f0dd9a6"
    assert parse_md5(f"MD5 (ml-latest-small.zip) = {digest}\n") == digest
    assert parse_md5(f"{digest.upper()}  ml-latest-small.zip\n") == digest
    with pytest.raises(DownloadError, match="no md5"):
        parse_md5("<html>not found</html>")


def test_wrong_md5_is_refused_and_leaves_nothing(server, dest):
    base_url, root = server
    _publish(root, "ml-latest-small.zip", _zip(SMALL_FILES), md5="0" * 32)
    with pytest.raises(DownloadError, match="does not match its published md5"):
        download_dataset("ml-latest-small", dest, base_url=base_url, timeout=5)
    assert _leftovers(dest) == []


@pytest.mark.parametrize(
    "evil",
    [
        "../evil.txt",
        "ml-latest-small/../../evil.txt",
        "..\\evil.txt",
        "C:/evil.txt",
    ],
)
def test_entries_escaping_the_destination_are_refused(server, dest, tmp_path, evil):
    base_url, root = server
    _publish(root, "ml-latest-small.zip", _zip({**SMALL_FILES, evil: "pwned"}))
    with pytest.raises(DownloadError, match="unsafe"):
        download_dataset("ml-latest-small", dest, base_url=base_url, timeout=5)
    assert _leftovers(dest) == []
    assert not (tmp_path / "evil.txt").exists()


def test_absolute_entry_is_refused(server, dest, tmp_path):
    base_url, root = server
    target = tmp_path / "outside" / "evil.txt"
    _publish(root, "ml-latest-small.zip", _zip({**SMALL_FILES, str(target): "pwned"}))
    with pytest.raises(DownloadError, match="absolute path"):
        download_dataset("ml-latest-small", dest, base_url=base_url, timeout=5)
    assert not target.exists()
    assert _leftovers(dest) == []


def test_symlink_entry_is_refused(server, dest):
    base_url, root = server
    link = zipfile.ZipInfo("ml-latest-small/passwd")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    _publish(root, "ml-latest-small.zip", _zip({**SMALL_FILES, link.filename: link}))
    with pytest.raises(DownloadError, match="symbolic link"):
        download_dataset("ml-latest-small", dest, base_url=base_url, timeout=5)
    assert _leftovers(dest) == []


def test_truncated_zip_is_reported_as_damaged(server, dest):
    base_url, root = server
    data = _zip(SMALL_FILES)
    # The md5 matches the truncated file, so it is the zip check that must catch it.
    _publish(root, "ml-latest-small.zip", data[: len(data) // 2])
    with pytest.raises(DownloadError, match="damaged"):
        download_dataset("ml-latest-small", dest, base_url=base_url, timeout=5)
    assert _leftovers(dest) == []


def test_corrupt_member_is_reported_as_damaged(server, dest):
    base_url, root = server
    data = bytearray(_zip(SMALL_FILES, compression=zipfile.ZIP_STORED))
    spot = data.index(b"964982703")
    data[spot] ^= 0x01  # flips one byte of stored content: only its CRC notices
    _publish(root, "ml-latest-small.zip", bytes(data))
    with pytest.raises(DownloadError, match="damaged"):
        download_dataset("ml-latest-small", dest, base_url=base_url, timeout=5)
    assert _leftovers(dest) == []


def test_archive_without_the_release_folder_is_refused(server, dest):
    base_url, root = server
    _publish(root, "ml-latest-small.zip", _zip({"other/ratings.csv": "x\n"}))
    with pytest.raises(DownloadError, match="no complete ml-latest-small/ folder"):
        download_dataset("ml-latest-small", dest, base_url=base_url, timeout=5)
    assert _leftovers(dest) == []


def test_existing_complete_folder_skips_the_download(server, dest):
    base_url, root = server
    _publish(root, "ml-latest-small.zip", _zip(SMALL_FILES))
    download_dataset("ml-latest-small", dest, base_url=base_url, timeout=5)
    ratings = dest / "ml-latest-small" / "ratings.csv"
    ratings.write_text("edited\n")
    # Nothing is listening at the dead URL, so success proves no request was made.
    folder = download_dataset("ml-latest-small", dest, base_url=_dead_url(), timeout=5)
    assert folder == dest / "ml-latest-small" and ratings.read_text() == "edited\n"
    # force fetches again and replaces the folder.
    download_dataset("ml-latest-small", dest, base_url=base_url, timeout=5, force=True)
    assert ratings.read_text() == SMALL_FILES["ml-latest-small/ratings.csv"]


def test_incomplete_folder_is_downloaded_again(server, dest):
    base_url, root = server
    _publish(root, "ml-latest-small.zip", _zip(SMALL_FILES))
    (dest / "ml-latest-small").mkdir(parents=True)
    (dest / "ml-latest-small" / "ratings.csv").write_text("partial\n")
    download_dataset("ml-latest-small", dest, base_url=base_url, timeout=5)
    assert (dest / "ml-latest-small" / "links.csv").is_file()
    assert (dest / "ml-latest-small" / "ratings.csv").read_text().startswith("userId")


def test_ml_10m_unpacks_to_its_odd_folder_name(server, dest):
    base_url, root = server
    files = {f"ml-10M100K/{name}": "1::1::5::838985046\n" for name in RELEASES["ml-10m"].files}
    _publish(root, "ml-10m.zip", _zip(files))
    assert download_dataset("ml-10m", dest, base_url=base_url, timeout=5) == dest / "ml-10M100K"
    assert (dest / "ml-10M100K" / "ratings.dat").is_file()


def test_base_url_none_uses_the_environment(server, dest, monkeypatch):
    base_url, root = server
    _publish(root, "ml-latest-small.zip", _zip(SMALL_FILES))
    monkeypatch.setenv(BASE_URL_ENV, base_url + "/")
    assert download_dataset("ml-latest-small", dest, base_url=None, timeout=5).is_dir()


def test_missing_checksum_falls_back_to_zip_checks(server, dest):
    base_url, root = server
    (root / "ml-latest-small.zip").write_bytes(_zip(SMALL_FILES))
    assert download_dataset("ml-latest-small", dest, base_url=base_url, timeout=5).is_dir()


def test_missing_zip_is_a_download_error(server, dest):
    base_url, _ = server
    with pytest.raises(DownloadError, match="HTTP 404") as caught:
        download_dataset("ml-25m", dest, base_url=base_url, timeout=5)
    assert "grouplens.org" in str(caught.value)


def test_server_not_listening_is_a_download_error(dest):
    with pytest.raises(DownloadError, match="check your internet connection") as caught:
        download_dataset("ml-latest-small", dest, base_url=_dead_url(), timeout=5)
    assert not isinstance(caught.value, OSError)
    assert "reelhouse ingest --data DIR" in str(caught.value)
    assert _leftovers(dest) == []


def test_unknown_release_lists_the_known_ones(dest):
    with pytest.raises(ValueError, match="ml-latest-small.*ml-32m"):
        download_dataset("ml-7m", dest)
    assert not dest.exists()


def test_release_table_covers_the_grouplens_names():
    assert set(RELEASES) == {
        "ml-latest-small",
        "ml-latest",
        "ml-100k",
        "ml-1m",
        "ml-10m",
        "ml-20m",
        "ml-25m",
        "ml-32m",
    }
    assert all(release.zip_name == f"{name}.zip" for name, release in RELEASES.items())
    assert RELEASES["ml-10m"].folder == "ml-10M100K"
