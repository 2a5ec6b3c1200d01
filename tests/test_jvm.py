"""Which Java reelhouse accepts, and the JVM start cache it uses on Java 25 (jvm.py)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from pipelines import jvm, session
from pipelines.errors import ReelhouseError

# `java -version` as real JDKs print it (Debian's 17, Temurin's 25 builds, an old 8 and 11).
DEBIAN_17 = ('openjdk version "17.0.15" 2025-04-15\n'
             "OpenJDK Runtime Environment (build 17.0.15+6-Debian-1deb12u1)\n"
             "OpenJDK 64-Bit Server VM (build 17.0.15+6-Debian-1deb12u1, mixed mode, sharing)")
TEMURIN_25_0_3 = ('openjdk version "25.0.3" 2026-04-21 LTS\n'
                  "OpenJDK Runtime Environment Temurin-25.0.3+9 (build 25.0.3+9-LTS)\n"
                  "OpenJDK 64-Bit Server VM Temurin-25.0.3+9 (build 25.0.3+9-LTS, mixed mode, "
                  "sharing)")
TEMURIN_25_0_2 = ('openjdk version "25.0.2" 2026-01-20 LTS\n'
                  "OpenJDK Runtime Environment Temurin-25.0.2+10 (build 25.0.2+10-LTS)")
JAVA_8 = 'openjdk version "1.8.0_292"\nOpenJDK Runtime Environment (build 1.8.0_292-b10)'
JAVA_11 = 'openjdk version "11.0.2" 2019-01-15'


def java_25_home() -> Path | None:
    """A Java 25.0.3+ installed beside the default one (/usr/lib/jvm), if the machine has one."""
    homes = [Path(os.environ["REELHOUSE_FAULTS_JAVA_HOME"])] if os.environ.get(
        "REELHOUSE_FAULTS_JAVA_HOME") else sorted(Path("/usr/lib/jvm").glob("*"))
    for home in homes:
        command = home / "bin" / "java"
        if command.is_file():
            found = jvm.java_at(str(command))
            if found.major == 25 and found.problem() is None:
                return home
    return None


def test_java_versions_are_read_from_what_java_prints():
    assert jvm.Java.from_banner("java", DEBIAN_17).version == (17, 0, 15)
    assert jvm.Java.from_banner("java", TEMURIN_25_0_3).version == (25, 0, 3)
    assert jvm.Java.from_banner("java", JAVA_8).version == (8, 0)
    with pytest.raises(ReelhouseError, match="Could not read the Java version"):
        jvm.Java.from_banner("java", "Error: could not find libjava.so")


def test_java_17_21_and_25_from_25_0_3_are_accepted_others_are_told_why_not():
    assert jvm.Java.from_banner("java", DEBIAN_17).problem() is None
    assert jvm.Java.from_banner("java", TEMURIN_25_0_3).problem() is None
    assert "needs Java 17, 21 or 25" in jvm.Java.from_banner("java", JAVA_8).problem()
    assert "needs Java 17, 21 or 25" in jvm.Java.from_banner("java", JAVA_11).problem()
    # Spark refuses 25.0.0-25.0.2 too: their G1 collector can corrupt data.
    assert "JDK-8377811" in jvm.Java.from_banner("java", TEMURIN_25_0_2).problem()


def test_the_machines_java_is_read_by_running_it():
    found = jvm.java()
    assert found.major == jvm.check_java()
    assert found.banner.startswith(("openjdk version", "java version"))


def test_java_before_25_has_no_start_cache(tmp_path):
    found = jvm.Java.from_banner("java", DEBIAN_17)
    assert jvm.start_cache_path(tmp_path / "jars", [], found) is None


def test_the_start_cache_is_named_for_the_java_build_and_the_jars(tmp_path):
    home = java_25_home()
    if home is None:
        pytest.skip("no Java 25.0.3+ on this machine")
    found = jvm.java_at(str(home / "bin" / "java"))
    jar = tmp_path / "jars" / "delta-spark.jar"
    jar.parent.mkdir()
    jar.write_bytes(b"PK")
    first = jvm.start_cache_path(jar.parent, [jar], found)
    assert first.parent == tmp_path / "jvm" and first.name.startswith("start-25-")
    assert jvm.start_cache_path(jar.parent, [jar], found) == first
    os.utime(jar, ns=(1, 1))  # a replaced jar: the JVM would refuse the old cache
    assert jvm.start_cache_path(jar.parent, [jar], found) != first
    other_build = replace(found, banner=found.banner.replace("25.0.3", "25.0.4"))
    assert jvm.start_cache_path(jar.parent, [jar], other_build) != jvm.start_cache_path(
        jar.parent, [jar], found)


def test_a_recorded_start_cache_is_passed_to_the_jvm_with_its_warnings_on_stderr(
        tmp_path, monkeypatch):
    """stdout carries query results (`reelhouse sql`): a JVM warning must not land there."""
    home = java_25_home()
    if home is None:
        pytest.skip("no Java 25.0.3+ on this machine")
    from pipelines.settings import Settings

    monkeypatch.setenv("JAVA_HOME", str(home))
    settings = Settings(warehouse=str(tmp_path / "warehouse"), jars_dir=tmp_path / "jars")
    jars = [tmp_path / "delta.jar"]
    jars[0].write_bytes(b"PK")
    assert "AOTCache" not in session.driver_java_options(settings, jars)  # none recorded yet
    cache = jvm.start_cache_path(settings.jars_dir, jars)
    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"recorded")
    options = session.driver_java_options(settings, jars).split()
    assert f"-XX:AOTCache={cache}" in options
    assert options[-2:] == ["-Xlog:disable", "-Xlog:all=warning:stderr"]
    recording = session.driver_java_options(settings, jars, record_start_cache=tmp_path / "x.aot")
    assert f"-XX:AOTCacheOutput={tmp_path / 'x.aot'}" in recording.split()
    assert "-XX:AOTCache=" not in recording


def test_only_the_newest_start_caches_are_kept(tmp_path):
    for age, name in enumerate(["start-25-a.aot", "start-25-b.aot", "start-25-c.aot",
                                "start-25-d.aot"]):
        (tmp_path / name).write_bytes(b"cache")
        os.utime(tmp_path / name, (1_000_000 - age, 1_000_000 - age))  # a is the newest
    (tmp_path / "start-25-e.part.aot").write_bytes(b"left half written long ago")
    os.utime(tmp_path / "start-25-e.part.aot", (1_000_000, 1_000_000))
    (tmp_path / "start-25-f.part.aot").write_bytes(b"being recorded now")
    deleted = jvm.prune_start_caches(tmp_path, keep=2)
    assert sorted(p.name for p in deleted) == ["start-25-c.aot", "start-25-d.aot",
                                               "start-25-e.part.aot"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["start-25-a.aot", "start-25-b.aot",
                                                          "start-25-f.part.aot"]
