"""One Spark session for the whole test run (starting Spark costs seconds); each test that
needs a warehouse gets a fresh folder and a catalog emptied of the previous test's tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines import catalog
from pipelines.session import create_spark
from pipelines.settings import PROJECT_DIR, Settings

REAL_DATA = PROJECT_DIR.parent / "shared" / "movielens" / "ml-latest-small"
TEST_SPARK_CONF = (("spark.ui.enabled", "false"),)


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
    catalog.register_warehouse(spark, settings)
    catalog.register_udfs(spark, settings)
    return settings


@pytest.fixture
def new_warehouse(spark, tmp_path_factory):
    """A function giving Settings for a fresh, empty warehouse (per test)."""
    return lambda name="warehouse": fresh_warehouse(spark, tmp_path_factory, name)
