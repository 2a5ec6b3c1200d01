"""Password authentication for the Thrift server (HiveServer2 CUSTOM mode).

`reelhouse passwd` writes PBKDF2-SHA256 hashes to a credentials file the operator controls; the
Java class beside this file checks logins against it. The class is compiled once with the JDK's
javac into the jar cache, against the Thrift server classes pyspark ships.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

from pipelines.errors import ReelhouseError

SOURCE = Path(__file__).with_name("FilePasswordAuthenticator.java")
CLASS_NAME = "reelhouse.auth.FilePasswordAuthenticator"
ITERATIONS = 210_000


def hash_line(user: str, password: str, iterations: int = ITERATIONS) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"{user}:pbkdf2_sha256:{iterations}:{salt.hex()}:{digest.hex()}"


def set_password(path: Path, user: str, password: str) -> None:
    """Add or replace a user in the credentials file (mode 600)."""
    if not user or ":" in user or any(c.isspace() for c in user):
        raise ReelhouseError(f"{user!r} is not a usable user name: no colons or spaces.")
    if len(password) < 8:
        raise ReelhouseError("The password is too short: use at least 8 characters.")
    lines = []
    if path.exists():
        lines = [line for line in path.read_text().splitlines()
                 if line.strip() and line.split(":", 1)[0] != user]
    lines.append(hash_line(user, password))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def authenticator_jar(jars_dir: Path, spark_jars: Path) -> Path:
    """The compiled authenticator, built on first use (needs javac, part of a JDK)."""
    digest = hashlib.sha1(SOURCE.read_bytes()).hexdigest()[:12]
    jar = jars_dir / f"reelhouse-auth-{digest}.jar"
    if jar.exists():
        return jar
    javac = shutil.which("javac")
    if os.environ.get("JAVA_HOME") and (Path(os.environ["JAVA_HOME"]) / "bin/javac").exists():
        javac = str(Path(os.environ["JAVA_HOME"]) / "bin/javac")
    if not javac:
        raise ReelhouseError(
            "Password authentication needs javac to build its checker once: install a JDK 17 "
            "(Debian: apt-get install openjdk-17-jdk-headless).")
    with tempfile.TemporaryDirectory() as out:
        result = subprocess.run(
            [javac, "-d", out, "-cp", f"{spark_jars}/*", str(SOURCE)],
            capture_output=True, text=True)
        if result.returncode != 0:
            raise ReelhouseError(f"Could not compile the authenticator: {result.stderr[:300]}")
        jars_dir.mkdir(parents=True, exist_ok=True)
        tmp = jar.with_suffix(".part")
        with zipfile.ZipFile(tmp, "w") as archive:
            for path in Path(out).rglob("*.class"):
                archive.write(path, path.relative_to(out).as_posix())
        tmp.replace(jar)
    return jar
