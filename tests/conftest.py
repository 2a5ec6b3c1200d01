"""One Spark session for the whole test run (starting Spark costs seconds); each test that
needs a warehouse gets a fresh folder and a catalog emptied of the previous test's tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines import registration
from pipelines.session import create_spark
from pipelines.settings import CHECKOUT_DIR, Settings

REAL_DATA = CHECKOUT_DIR.parent / "shared" / "movielens" / "ml-latest-small"
# How Spark plans and evaluates a query changes no result the tests check, and on their few
# thousand rows three of Spark's speed settings cost more than they save. Adaptive query
# execution re-plans a query at every stage: a tenth of a tiny run's CPU. Generated code is
# compiled (Janino, then the JIT) for every new plan, and a test's tiny queries never earn it
# back: a cold tiny full run took 291 CPU-s (157 s) compiled and 226 CPU-s (124 s)
# interpreted (Spark's own evaluators, which Spark tests against the generated code). Four
# shuffle partitions (two per core) are four tasks per stage for a few thousand rows; two
# took a tiny run from 221 to 201 CPU-s. With these settings the in-process tests of
# test_evaluate, test_models, test_train and test_runner took 316 s instead of 397 s. The
# product's defaults (all three on, as at scale) stay covered end to end by the tests that
# run `reelhouse run` and `reelhouse serve` as processes: real data, bench, serve.
SMALL_DATA_SQL_CONF = {"spark.sql.adaptive.enabled": "false",
                       "spark.sql.codegen.wholeStage": "false",
                       "spark.sql.codegen.factoryMode": "NO_CODEGEN",
                       "spark.sql.shuffle.partitions": "2"}
TEST_SPARK_CONF = (("spark.ui.enabled", "false"), *SMALL_DATA_SQL_CONF.items())


def pytest_collection_modifyitems(items):
    """The fault-injection chain last: its in-process runs then find this session's JVM warm
    (compiled by the tests before it) instead of paying for that warm-up themselves, which
    made the chain some 3 minutes longer when it ran first (its folder sorts first)."""
    faults = [item for item in items if "/tests/faults/" in str(item.path)]
    items[:] = [item for item in items if item not in faults] + faults


def test_settings(warehouse: Path, **overrides) -> Settings:
    return Settings(warehouse=str(warehouse), master="local[2]", driver_memory="3g",
                    spark_conf=TEST_SPARK_CONF, target_dir=warehouse.parent / "target",
                    **overrides)


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    settings = test_settings(tmp_path_factory.mktemp("boot") / "warehouse")
    session = create_spark(settings, app_name="reelhouse-tests", register=False)
    yield session
    session.stop()


def reset_catalog(spark, schema: str = "movielens") -> None:
    """Forget every table and view of the previous warehouse (their files stay where they are)."""
    spark.sql(f"create schema if not exists {schema}")
    for row in spark.sql(f"show tables in {schema}").collect():
        if not row.isTemporary:
            kind = spark.sql(f"describe table extended {schema}.{row.tableName}") \
                .where("col_name = 'Type'").first()
            if kind is not None and kind.data_type == "VIEW":
                spark.sql(f"drop view if exists {schema}.{row.tableName}")
            else:
                spark.sql(f"drop table if exists {schema}.{row.tableName}")


def fresh_warehouse(spark, tmp_path_factory, name: str = "warehouse") -> Settings:
    """Settings for an empty warehouse, the catalog emptied of the previous one's tables."""
    reset_catalog(spark)
    settings = test_settings(tmp_path_factory.mktemp(name) / "warehouse")
    registration.register_warehouse(spark, settings)
    registration.register_udfs(spark, settings)
    return settings


@pytest.fixture
def new_warehouse(spark, tmp_path_factory):
    """A function giving Settings for a fresh, empty warehouse (per test)."""
    return lambda name="warehouse": fresh_warehouse(spark, tmp_path_factory, name)


@pytest.fixture(scope="session")
def installed_reelhouse(tmp_path_factory) -> Path:
    """`reelhouse` from a plain `pip install .` (not editable) of this checkout into a fresh
    virtualenv: what a user gets, with the SQL project inside the package and no checkout
    to fall back on. Returns its `reelhouse` command."""
    import os
    import subprocess
    import sys

    venv = tmp_path_factory.mktemp("installed") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "REELHOUSE_PROJECT_DIR")}
    done = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", str(CHECKOUT_DIR)],
                          capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return venv / "bin" / "reelhouse"
