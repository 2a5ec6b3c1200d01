"""A password-protected Thrift server: the right password connects, a wrong one or none is
refused, over PyHive and beeline."""

from __future__ import annotations

import re

import pytest
from pyhive import hive
from thrift.transport.TTransport import TTransportException

from pipelines import auth, writes
from pipelines.errors import ReelhouseError
from tests.conftest import (
    free_port,
    fresh_warehouse,
    run_beeline,
    start_server,
    stop_server,
    wait_for_ready,
)


@pytest.fixture(scope="module")
def guarded_server(spark, tmp_path_factory):
    settings = fresh_warehouse(spark, tmp_path_factory, "guarded")
    writes.replace_table(spark, settings, spark.range(4), "secrets")
    auth_file = tmp_path_factory.mktemp("auth") / "users"
    auth.set_password(auth_file, "analyst", "correct-horse-battery")
    port = free_port()
    process = start_server(settings.warehouse, port, "--auth-file", str(auth_file))
    try:
        wait_for_ready(process)
        yield port
    finally:
        stop_server(process)


def connect(port, username=None, password=None):
    if password is None:
        return hive.connect("127.0.0.1", port=port, database="movielens", username=username)
    return hive.connect("127.0.0.1", port=port, database="movielens", username=username,
                        password=password, auth="CUSTOM")


def test_the_right_password_connects(guarded_server):
    cursor = connect(guarded_server, "analyst", "correct-horse-battery").cursor()
    cursor.execute("select count(*) from movielens.secrets")
    assert cursor.fetchall() == [(4,)]


@pytest.mark.parametrize("username, password", [
    ("analyst", "wrong password"), ("intruder", "correct-horse-battery"), ("analyst", None)])
def test_wrong_or_missing_credentials_are_refused(guarded_server, username, password):
    """The server itself refuses the login (HiveServer2 answers the SASL handshake with BAD):
    not a refused connection, a timeout or a crash."""
    with pytest.raises(TTransportException,
                       match=re.escape("Bad status: 3 (b'Error validating the login')")):
        connect(guarded_server, username, password).cursor().execute("select 1")


def test_beeline_needs_the_password_too(guarded_server):
    count = "select count(*) from secrets"
    good = run_beeline(guarded_server, count, "-n", "analyst", "-p", "correct-horse-battery")
    assert good.returncode == 0 and good.stdout.strip().splitlines()[-1] == "4"
    bad = run_beeline(guarded_server, count, "-n", "analyst", "-p", "nope")
    assert bad.returncode == 1 and bad.stdout.strip() == ""
    assert "Peer indicated failure: Error validating the login" in bad.stderr, bad.stderr[-2000:]


def test_weak_passwords_and_odd_user_names_are_refused(tmp_path):
    with pytest.raises(ReelhouseError, match="too short"):
        auth.set_password(tmp_path / "users", "analyst", "short")
    with pytest.raises(ReelhouseError, match="not a usable user name"):
        auth.set_password(tmp_path / "users", "a:b", "long enough password")
