"""history, restore and maintain: Delta's recovery tools behind one-line commands."""

from __future__ import annotations

import pytest

from pipelines import maintenance, writes
from pipelines.errors import ReelhouseError


def test_history_restore_and_maintain(spark, new_warehouse):
    settings = new_warehouse()
    writes.replace_table(spark, settings, spark.range(3), "numbers")
    writes.replace_table(spark, settings, spark.range(7), "numbers")
    versions = [r.version for r in maintenance.history(spark, settings, "numbers").collect()]
    assert versions == [1, 0]

    maintenance.restore_version(spark, settings, "numbers", 0)
    assert spark.sql("select count(*) from movielens.numbers").first()[0] == 3
    with pytest.raises(ReelhouseError, match="versions 0 to 2"):
        maintenance.restore_version(spark, settings, "numbers", 9)

    with pytest.raises(ReelhouseError, match="below Delta's safe default"):
        maintenance.maintain(spark, settings, retain_hours=1)
    maintenance.maintain(spark, settings)
    assert spark.sql("select count(*) from movielens.numbers").first()[0] == 3


@pytest.mark.parametrize("table", ["ratings; drop table movielens.ratings", "x'--", "../etc"])
def test_table_arguments_carrying_sql_are_rejected(spark, new_warehouse, table):
    settings = new_warehouse()
    with pytest.raises(ReelhouseError, match="not a valid table name"):
        maintenance.history(spark, settings, table)


def test_an_unknown_table_is_named_with_the_known_ones(spark, new_warehouse):
    settings = new_warehouse()
    writes.replace_table(spark, settings, spark.range(1), "present")
    with pytest.raises(ReelhouseError, match="tables: present"):
        maintenance.restore_version(spark, settings, "absent", 0)
