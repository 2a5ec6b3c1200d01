"""The JVM side of a run: a usable Java, and Delta Lake's jars cached locally.

The jars are fetched from Maven Central once (with their published SHA-1 checked) and then passed
to Spark as local paths, so later starts need no network and every JVM we launch (this process,
`spark-sql`, the Thrift server) loads exactly the same jars. `--packages` is avoided on purpose:
it resolves at every start and misbehaves on the Thrift server (delta-io/delta#1332, #1341).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from pipelines.errors import ReelhouseError

SUPPORTED_JAVA = (17, 21, 25)  # Spark 4.2's
# Java 25 before 25.0.3 has a G1 bug that corrupts data (JDK-8377811); Spark refuses it too.
FIRST_SAFE_JAVA_25 = (25, 0, 3)
# From Java 25 on, a JVM can start from an ahead-of-time cache of the classes an earlier run
# loaded and linked and of how its methods ran (JEPs 483, 514, 515): see start_cache_path.
START_CACHE_JAVA = 25
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


@dataclass(frozen=True)
class Java:
    command: str
    major: int
    version: tuple[int, ...]  # (25, 0, 3)
    banner: str  # `java -version`'s output: it names the exact build

    @classmethod
    def from_banner(cls, command: str, banner: str) -> Java:
        match = re.search(r'version "(\d+)((?:\.\d+)*)', banner)
        if not match:
            raise ReelhouseError(
                f"Could not read the Java version from {command}: install Java 17.")
        numbers = (int(match.group(1)),) + tuple(int(n) for n in match.group(2).split(".") if n)
        if numbers[0] == 1 and len(numbers) > 1:  # "1.8" style
            numbers = numbers[1:]
        return cls(command, numbers[0], numbers, banner.strip())

    def problem(self) -> str | None:
        """Why Spark must not run on this Java, in one sentence; None if it may."""
        if self.major not in SUPPORTED_JAVA:
            return (f"{self.command} is Java {self.major}, but Spark 4.2 needs Java 17, 21 or "
                    "25: install Java 17 and set JAVA_HOME to it.")
        if self.major == 25 and self.version < FIRST_SAFE_JAVA_25:
            return (f"{self.command} is Java {'.'.join(map(str, self.version))}, whose G1 "
                    "garbage collector can corrupt data (JDK-8377811): update it to 25.0.3 or "
                    "later, or use Java 17.")
        return None


@functools.cache
def java_at(command: str) -> Java:
    """The Java at a path, from its `java -version` (run once per process)."""
    try:
        out = subprocess.run([command, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ReelhouseError(
            f"Could not run {command} ({exc}): install Java 17 or fix JAVA_HOME.") from exc
    return Java.from_banner(command, out.stderr + out.stdout)


def java() -> Java:
    """The Java Spark will run on: JAVA_HOME's, else the one on PATH."""
    return java_at(java_command())


def check_java() -> int:
    """Fail with one sentence unless a supported Java is on hand; returns its major version."""
    found = java()
    problem = found.problem()
    if problem:
        raise ReelhouseError(problem)
    return found.major


def start_cache_path(jars_dir: Path, jars: list[Path], found: Java | None = None) -> Path | None:
    """Where the JVM start cache for this Java build (default: java()), Spark install and jars
    lives, or None if that Java cannot use one. The JVM itself refuses a cache whose class path
    changed; the name changes with anything that would make it refuse (a reinstalled pyspark,
    other jars), so a stale cache is never tried."""
    found = found or java()
    if found.major < START_CACHE_JAVA:
        return None
    import pyspark

    spark_jars = Path(pyspark.__file__).resolve().parent / "jars"
    stamp = [found.command, found.banner, str(spark_jars), str(spark_jars.stat().st_mtime_ns)]
    stamp += [f"{jar}:{jar.stat().st_size}:{jar.stat().st_mtime_ns}" for jar in jars]
    key = hashlib.sha1("\n".join(stamp).encode()).hexdigest()[:16]
    return jars_dir.parent / "jvm" / f"start-{found.major}-{key}.aot"


START_CACHES_KEPT = 3  # about 230 MB each; a new virtualenv or Java build records another


def prune_start_caches(folder: Path, keep: int = START_CACHES_KEPT) -> list[Path]:
    """Delete all but the `keep` newest start caches, and half-written ones an hour old (a
    younger one may be another process's recording); returns what was deleted."""
    import time

    partial = set(folder.glob("start-*.part.aot*"))
    caches = sorted(set(folder.glob("start-*.aot")) - partial, key=lambda p: p.stat().st_mtime,
                    reverse=True)
    abandoned = [p for p in sorted(partial) if p.stat().st_mtime < time.time() - 3600]
    doomed = caches[keep:] + abandoned
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed


def _fetch(url: str, dest: Path) -> None:
    tmp = dest.with_suffix(dest.suffix + ".part")
    with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
        shutil.copyfileobj(response, out, 1 << 20)
    tmp.replace(dest)


def _sha1_of(path: Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _maven_url(group: str, artifact: str, ver: str, kind: str = "jar") -> str:
    return f"{MAVEN_REPO}/{group.replace('.', '/')}/{artifact}/{ver}/{artifact}-{ver}.{kind}"


def ensure_jars(jars_dir: Path, artifacts: list[tuple[str, str, str]], what: str,
                quiet: bool = False) -> list[Path]:
    """Local paths of the artifacts' jars, downloading (and SHA-1 checking) the ones not cached
    yet; `what` names them in messages ("Delta Lake's")."""
    jars_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for group, artifact, ver in artifacts:
        jar = jars_dir / f"{artifact}-{ver}.jar"
        if not jar.exists():
            url = _maven_url(group, artifact, ver)
            if not quiet:
                print(f"reelhouse: fetching {group}:{artifact}:{ver} into {jars_dir}",
                      file=sys.stderr)
            try:
                with urllib.request.urlopen(url + ".sha1", timeout=60) as response:
                    expected = response.read().decode().split()[0].strip().lower()
                _fetch(url, jar)
            except (urllib.error.URLError, OSError, TimeoutError) as exc:
                raise ReelhouseError(
                    f"Could not download {what} jar {artifact}-{ver} from {MAVEN_REPO} "
                    f"({exc}): check the network or a proxy, or copy the jar into {jars_dir} "
                    "(REELHOUSE_JARS_DIR) by hand.") from exc
            actual = _sha1_of(jar)
            if actual != expected:
                jar.unlink()
                raise ReelhouseError(
                    f"{artifact}-{ver}.jar failed its SHA-1 check (got {actual}, Maven Central "
                    f"publishes {expected}): run the command again to fetch it afresh.")
        paths.append(jar)
    return paths


def ensure_delta_jars(jars_dir: Path, quiet: bool = False) -> list[Path]:
    return ensure_jars(jars_dir, delta_artifacts(), "Delta Lake's", quiet)


def hadoop_version() -> str:
    """The Hadoop pyspark ships, from its hadoop-client-api jar's name."""
    import pyspark

    jars = sorted((Path(pyspark.__file__).resolve().parent / "jars").glob(
        "hadoop-client-api-*.jar"))
    if not jars:
        raise ReelhouseError("pyspark's jars hold no hadoop-client-api jar: reinstall pyspark.")
    return jars[-1].name.removeprefix("hadoop-client-api-").removesuffix(".jar")


def _read_url(url: str, what: str, fallback: Path) -> str:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.read().decode()
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise ReelhouseError(
            f"Could not read {what} from {MAVEN_REPO} ({exc}): check the network, or write "
            f"the list of jars S3A needs in {fallback} by hand.") from exc


def _compile_dependencies(pom: str) -> list[tuple[str, str]]:
    """(group, artifact) of a pom's compile-scope, non-optional dependencies."""
    found = []
    for block in re.findall(r"<dependency>(.*?)</dependency>", pom, re.S):
        fields = dict(re.findall(r"<(groupId|artifactId|scope|optional)>([^<]+)<", block))
        if fields.get("scope", "compile") == "compile" and fields.get("optional") != "true":
            found.append((fields["groupId"], fields["artifactId"]))
    return found


def _managed_version(project_pom: str, group: str, artifact: str) -> str | None:
    """The version hadoop-project's dependencyManagement gives a dependency, ${…} resolved."""
    for block in re.findall(r"<dependency>(.*?)</dependency>", project_pom, re.S):
        if (f"<groupId>{group}</groupId>" in block
                and f"<artifactId>{artifact}</artifactId>" in block):
            version = re.search(r"<version>([^<]+)<", block)
            if version is None:
                return None
            value = version.group(1).strip()
            prop = re.fullmatch(r"\$\{(.+)\}", value)
            if prop:
                found = re.search(rf"<{re.escape(prop.group(1))}>([^<]+)<", project_pom)
                return found.group(1).strip() if found else None
            return value
    return None


def s3a_artifacts(jars_dir: Path) -> list[tuple[str, str, str]]:
    """hadoop-aws for pyspark's Hadoop and what it needs at run time: its compile-scope
    dependencies (the AWS SDK bundle, the S3 analytics accelerator) at the versions that Hadoop
    release was built with (its hadoop-project pom; other versions can fail at run time).
    Read from Maven Central once and kept beside the jars."""
    hadoop = hadoop_version()
    known = jars_dir / f"hadoop-{hadoop}-s3a.json"
    if not known.is_file():
        aws_pom = _read_url(_maven_url("org.apache.hadoop", "hadoop-aws", hadoop, "pom"),
                            f"hadoop-aws {hadoop}'s pom", known)
        project_pom = _read_url(_maven_url("org.apache.hadoop", "hadoop-project", hadoop, "pom"),
                                f"Hadoop {hadoop}'s build settings", known)
        artifacts = [("org.apache.hadoop", "hadoop-aws", hadoop)]
        for group, artifact in _compile_dependencies(aws_pom):
            if group == "org.apache.hadoop":  # pyspark's hadoop-client jars have these
                continue
            version = _managed_version(project_pom, group, artifact)
            if version is None:
                raise ReelhouseError(f"Hadoop {hadoop}'s pom gives no version of {group}:"
                                     f"{artifact}: write the list of jars in {known} by hand.")
            artifacts.append((group, artifact, version))
        jars_dir.mkdir(parents=True, exist_ok=True)
        known.write_text(json.dumps(artifacts, indent=1) + "\n")
    return [tuple(entry) for entry in json.loads(known.read_text())]


def ensure_s3a_jars(jars_dir: Path, quiet: bool = False) -> list[Path]:
    """S3A's jars (about 690 MB, the SDK bundle nearly all of it): fetched only for a
    warehouse or dataset on s3a://, or by `reelhouse setup --s3a`."""
    return ensure_jars(jars_dir, s3a_artifacts(jars_dir), "S3A's", quiet)


def jars_for(settings, quiet: bool = False) -> list[Path]:
    """Every jar a JVM of ours loads for these settings: Delta's, and S3A's where needed."""
    jars = ensure_delta_jars(settings.jars_dir, quiet)
    if settings.uses_s3a:
        jars += ensure_s3a_jars(settings.jars_dir, quiet)
    return jars
