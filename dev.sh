#!/usr/bin/env bash
# One entry point for a fresh clone: sets up what reelhouse needs (a virtualenv with the pinned
# packages, Delta Lake's jars cached from Maven Central), then runs the command.
#   ./dev.sh run [--data DIR]   build the whole warehouse (default: a built-in synthetic dataset)
#   ./dev.sh test [PYTEST ARGS] lint (ruff, sqlfluff) and run the test suite
#   ./dev.sh COMMAND ...        any other reelhouse command, e.g. ./dev.sh sql "show tables in movielens"
set -euo pipefail
cd "$(dirname "$0")"

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "dev.sh: creating .venv with $($python --version)" >&2
    "$python" -m venv .venv
fi
# Reinstall only when the dependency list changed.
stamp=".venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)"
if [ ! -f "$stamp" ]; then
    echo "dev.sh: installing reelhouse and its pinned dependencies into .venv" >&2
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e '.[dev]'
    touch "$stamp"
fi
.venv/bin/reelhouse setup

command=${1:-run}
[ $# -gt 0 ] && shift
case "$command" in
    test)
        # The HTML report and the API's page are checked in a real headless browser (Debian's
        # chromium); the API bench's smoke test drives the API with wrk.
        if { ! command -v chromium || ! command -v wrk; } >/dev/null 2>&1 \
                && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
            echo "dev.sh: installing chromium and wrk for the browser and load tests" >&2
            (apt-get update -qq \
                && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium wrk) \
                >/dev/null 2>&1 || echo "dev.sh: chromium or wrk could not be installed" >&2
        fi
        # The object-storage tests run against a real S3-compatible server, SeaweedFS, built
        # once from the Go module proxy into the cache (tests/object_store.py), through S3A's
        # jars (fetched once, like Delta's).
        .venv/bin/reelhouse setup --s3a
        .venv/bin/python -m tests.object_store install >/dev/null \
            || echo "dev.sh: SeaweedFS could not be built; the object-storage tests will skip" >&2
        .venv/bin/ruff check .
        .venv/bin/sqlfluff lint sql
        # The fault chain (tests/faults) starts a JVM ten times: where the machine has a Java 25
        # beside the default one, its processes run on it, from a JVM start cache recorded once
        # here (reelhouse setup, with the chain's settings). The rest of the suite runs on the
        # default Java.
        if [ -z "${REELHOUSE_FAULTS_JAVA_HOME:-}" ]; then
            for home in /usr/lib/jvm/*; do
                if [ -x "$home/bin/java" ] && "$home/bin/java" -version 2>&1 | grep -q 'version "25\.'; then
                    JAVA_HOME=$home .venv/bin/python -m tests.faults.harness \
                        && export REELHOUSE_FAULTS_JAVA_HOME=$home
                    break
                fi
            done
        fi
        exec .venv/bin/python -m pytest "$@"
        ;;
    *)
        exec .venv/bin/reelhouse "$command" "$@"
        ;;
esac
