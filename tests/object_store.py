"""A real S3-compatible server for the object-storage tests: SeaweedFS (Apache-2.0), built once
from the Go module proxy into the cache and started on loopback, one process (`weed server`:
master, volume server, filer and S3 gateway).

    python -m tests.object_store install    # what ./dev.sh test runs when it is missing

Its S3 identity (an access key and a secret made up per test session) is written to the
server's config file and handed to reelhouse the standard way, in AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY, never on a command line.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from pipelines.settings import default_jars_dir

# A SeaweedFS commit the Go module proxy serves (it publishes no tagged module versions).
# `go install` refuses the module (its go.mod has replace directives), so it is built as the
# main module from a copy of the downloaded source.
SEAWEEDFS_MODULE = "github.com/seaweedfs/seaweedfs"
SEAWEEDFS_VERSION = "v0.0.0-20261109003541-7506e5f91cd6"
BUCKET = "reelhouse"


def weed_path() -> Path:
    named = os.environ.get("REELHOUSE_WEED")
    return Path(named) if named else default_jars_dir().parent / "bin" / "weed"


def install(target: Path | None = None) -> Path:
    """Build SeaweedFS's `weed` into the cache (several minutes of two cores, once)."""
    target = target or weed_path()
    if target.is_file():
        return target
    print(f"object_store: building SeaweedFS into {target} (once, a few minutes)",
          file=sys.stderr)
    if shutil.which("go") is None:
        raise SystemExit("object_store: Go is not installed, so SeaweedFS cannot be built")
    found = subprocess.run(["go", "mod", "download", "-json",
                            f"{SEAWEEDFS_MODULE}@{SEAWEEDFS_VERSION}"],
                           capture_output=True, text=True, check=True)
    source = Path(json.loads(found.stdout)["Dir"])
    with tempfile.TemporaryDirectory() as work:
        copy = Path(work) / "seaweedfs"
        shutil.copytree(source, copy)
        for path in copy.rglob("*"):  # the module cache is read-only
            path.chmod(path.stat().st_mode | 0o200)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        subprocess.run(["go", "build", "-o", str(partial), "./weed"], cwd=copy, check=True)
        partial.replace(target)
    return target


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class S3Server:
    process: subprocess.Popen
    endpoint: str  # http://127.0.0.1:PORT
    filer: str  # the filer's HTTP address: uploads and listings in tests
    access_key: str
    secret_key: str

    def credentials_env(self) -> dict[str, str]:
        """The standard AWS variables S3A's default credential chain reads."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}

    def s3a_conf(self) -> list[str]:
        """`--conf` flags pointing S3A at this server (no secret among them)."""
        return ["--conf", f"spark.hadoop.fs.s3a.endpoint={self.endpoint}",
                "--conf", "spark.hadoop.fs.s3a.endpoint.region=us-east-1",
                "--conf", "spark.hadoop.fs.s3a.path.style.access=true",
                "--conf", "spark.hadoop.fs.s3a.connection.ssl.enabled=false"]

    def upload(self, folder: Path, prefix: str) -> None:
        """Every file of a folder to s3a://BUCKET/prefix/ through the filer, whose
        /buckets/<bucket>/ tree is what the S3 gateway serves."""
        for path in sorted(folder.iterdir()):
            request = urllib.request.Request(
                f"{self.filer}/buckets/{BUCKET}/{prefix}/{path.name}", data=path.read_bytes(),
                method="PUT")
            with urllib.request.urlopen(request, timeout=60) as response:
                assert response.status in (200, 201), response.status

    def listing(self, prefix: str) -> list[str]:
        """Names under s3a://BUCKET/prefix/, as the filer lists them."""
        request = urllib.request.Request(f"{self.filer}/buckets/{BUCKET}/{prefix}/?limit=1000",
                                         headers={"Accept": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            entries = json.load(response).get("Entries") or []
        return sorted(entry["FullPath"].rsplit("/", 1)[-1] for entry in entries)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


def start(folder: Path, wait_seconds: float = 60) -> S3Server:
    """`weed server` with its S3 gateway on loopback, data and logs in `folder`."""
    weed = weed_path()
    if not weed.is_file():
        raise FileNotFoundError(weed)
    access_key, secret_key = f"reelhouse{secrets.token_hex(4)}", secrets.token_hex(20)
    config = folder / "s3.json"
    config.write_text(json.dumps({"identities": [{
        "name": "reelhouse", "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}))
    ports = {name: _free_port() for name in ("master", "volume", "filer", "s3")}
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    command = [str(weed), "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
               f"-master.port={ports['master']}", f"-volume.port={ports['volume']}",
               "-master.telemetry=false", "-master.volumeSizeLimitMB=256", "-volume.max=0",
               "-filer", f"-filer.port={ports['filer']}", "-s3", f"-s3.port={ports['s3']}",
               f"-s3.config={config}", "-s3.port.iceberg=0", "-s3.port.lance=0"]
    for name in ("master", "volume", "filer", "s3"):  # gRPC ports: free ones, not port + 10000
        command.append(f"-{name}.port.grpc={_free_port()}")
    log = open(folder / "weed.log", "ab")  # noqa: SIM115 (the server keeps it open)
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL)
    server = S3Server(process, f"http://127.0.0.1:{ports['s3']}",
                      f"http://127.0.0.1:{ports['filer']}", access_key, secret_key)
    deadline = time.monotonic() + wait_seconds
    while True:  # ready once the filer lists the bucket folder and the gateway answers
        try:
            urllib.request.urlopen(server.endpoint, timeout=2).close()
        except urllib.error.HTTPError:  # 403 for an unsigned request: it is up
            break
        except (urllib.error.URLError, OSError):
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            tail = (folder / "weed.log").read_text(errors="replace")[-1500:]
            raise RuntimeError(f"SeaweedFS did not start: {tail}")
        time.sleep(0.5)
    return server


if __name__ == "__main__":
    if sys.argv[1:] != ["install"]:
        raise SystemExit("usage: python -m tests.object_store install")
    print(install())
