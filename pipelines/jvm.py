"""The JVM side of a run: a usable Java, and Delta Lake's jars cached locally.

The jars are fetched from Maven Central once (with their published SHA-1 checked) and then passed
to Spark as local paths, so later starts need no network and every JVM we launch (this process,
`spark-sql`, the Thrift server) loads exactly the same jars. `--packages` is avoided on purpose:
it resolves at every start and misbehaves on the Thrift server (delta-io/delta#1332, #1341).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from importlib.metadata import version
from pathlib import Path

from pipelines.errors import ReelhouseError

SUPPORTED_JAVA = (17, 21)
MAVEN_REPO = os.environ.get("REELHOUSE_MAVEN_REPO", "https://repo1.maven.org/maven2")


def delta_artifacts() -> list[tuple[str, str, str]]:
    """Maven coordinates matching the installed pip packages (delta-spark names its jar after
    Spark's major.minor, e.g. delta-spark_4.2_2.13). delta-spark and delta-storage are all Spark
    needs for Delta tables; the kernel jars delta-spark also lists are for other engines."""
    delta = version("delta-spark")
    spark_minor = ".".join(version("pyspark").split(".")[:2])
    return [
        ("io.delta", f"delta-spark_{spark_minor}_2.13", delta),
        ("io.delta", "delta-storage", delta),
    ]


def java_command() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if candidate.exists():
            return str(candidate)
        raise ReelhouseError(
            f"JAVA_HOME is {java_home} but it has no bin/java: point JAVA_HOME at a Java 17 "
            "install or unset it.")
    found = shutil.which("java")
    if not found:
        raise ReelhouseError(
            "Java was not found: install Java 17 (Debian: apt-get install openjdk-17-jre-headless)"
            " or set JAVA_HOME.")
    return found


def check_java() -> int:
    """Fail with one sentence unless a supported Java is on hand; returns its major version."""
    java = java_command()
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ReelhouseError(
            f"Could not run {java} ({exc}): install Java 17 or fix JAVA_HOME.") from exc
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        raise ReelhouseError(f"Could not read the Java version from {java}: install Java 17.")
    major = int(match.group(1))
    if major == 1 and match.group(2):  # "1.8" style
        major = int(match.group(2))
    if major not in SUPPORTED_JAVA:
        raise ReelhouseError(
            f"{java} is Java {major}, but Spark 4 needs Java 17 or 21: install Java 17 and set "
            "JAVA_HOME to it.")
    return major


def _fetch(url: str, dest: Path) -> None:
    tmp = dest.with_suffix(dest.suffix + ".part")
    with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
        shutil.copyfileobj(response, out, 1 << 20)
    tmp.replace(dest)


def ensure_delta_jars(jars_dir: Path, quiet: bool = False) -> list[Path]:
    """Local paths of Delta's jars, downloading (and SHA-1 checking) the ones not cached yet."""
    jars_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for group, artifact, ver in delta_artifacts():
        jar = jars_dir / f"{artifact}-{ver}.jar"
        if not jar.exists():
            base = f"{MAVEN_REPO}/{group.replace('.', '/')}/{artifact}/{ver}/{artifact}-{ver}.jar"
            if not quiet:
                print(f"reelhouse: fetching {group}:{artifact}:{ver} into {jars_dir}",
                      file=sys.stderr)
            try:
                with urllib.request.urlopen(base + ".sha1", timeout=60) as response:
                    expected = response.read().decode().split()[0].strip().lower()
                _fetch(base, jar)
            except (urllib.error.URLError, OSError, TimeoutError) as exc:
                raise ReelhouseError(
                    f"Could not download Delta Lake's jar {artifact}-{ver} from {MAVEN_REPO} "
                    f"({exc}): check the network or a proxy, or copy the jar into {jars_dir} "
                    "(REELHOUSE_JARS_DIR) by hand.") from exc
            actual = hashlib.sha1(jar.read_bytes()).hexdigest()
            if actual != expected:
                jar.unlink()
                raise ReelhouseError(
                    f"{artifact}-{ver}.jar failed its SHA-1 check (got {actual}, Maven Central "
                    f"publishes {expected}): run the command again to fetch it afresh.")
        paths.append(jar)
    return paths
