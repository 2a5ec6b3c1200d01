"""The whole pipeline on object storage: a warehouse at s3a://reelhouse/warehouse and the
dataset at s3a://reelhouse/data/…, both on a real S3-compatible server on loopback
(SeaweedFS, tests/object_store.py), reached through Hadoop's S3A as on AWS. The run lock is on
the bucket too, so a second run against the same warehouse is refused; the Thrift server and
`spark-sql` read the tables by name; the credentials never appear in what reelhouse prints."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests import object_store
from tests.conftest import (
    REELHOUSE,
    free_port,
    query,
    reelhouse_env,
    wait_for_ready,
)

pytestmark = pytest.mark.object_storage
WAREHOUSE = f"s3a://{object_store.BUCKET}/warehouse"
DATA = f"s3a://{object_store.BUCKET}/data/ml-synthetic"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    if not object_store.weed_path().is_file():
        pytest.skip(f"SeaweedFS is not installed at {object_store.weed_path()}: ./dev.sh test "
                    "builds it (python -m tests.object_store install)")
    server = object_store.start(tmp_path_factory.mktemp("seaweedfs"))
    yield server
    server.stop()


def reelhouse(s3, *args: str, wait: bool = True, timeout: float = 900):
    """A reelhouse command against the S3 server: credentials in the environment only."""
    command = REELHOUSE + list(args) + s3.s3a_conf()
    env = {**reelhouse_env(), **s3.credentials_env()}
    if not wait:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env, stdin=subprocess.DEVNULL)
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env,
                          stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def dataset(s3, tmp_path_factory):
    from pipelines.generate import generate_dataset

    folder = tmp_path_factory.mktemp("s3-data") / "ml-synthetic"
    meta = generate_dataset(folder, 3000, num_users=60, num_movies=200, seed=9)
    s3.upload(folder, "data/ml-synthetic")
    return meta


@pytest.fixture(scope="module")
def first_run(s3, dataset, tmp_path_factory):
    """A full run on the bucket; while it holds the lock, a second run against the same
    warehouse (another process, as from another machine) is started and refused."""
    summary = tmp_path_factory.mktemp("s3-run") / "summary.json"
    run = reelhouse(s3, "run", "--warehouse", WAREHOUSE, "--data", DATA, "--summary",
                    str(summary), "--conf", "spark.ui.enabled=false", wait=False)
    seen = []
    for line in run.stderr:
        seen.append(line)
        if " started" in line:  # the lock on the bucket is held from here on
            break
    second = reelhouse(s3, "run", "--warehouse", WAREHOUSE, "--data", DATA, "--conf",
                       "spark.ui.enabled=false", timeout=300)
    rest = run.stderr.read()
    run.wait(timeout=60)
    return run.returncode, "".join(seen) + rest, second, json.loads(summary.read_text()) \
        if summary.exists() else None


def test_a_run_on_s3a_builds_the_warehouse_in_the_bucket(s3, dataset, first_run):
    returncode, stderr, _, summary = first_run
    assert returncode == 0, stderr[-3000:]
    assert summary["status"] == "succeeded"
    assert summary["data_dir"] == DATA
    rows = summary["table_rows"]
    assert rows["raw_ratings"] == rows["ratings"] + rows["rejected_ratings"] == \
        dataset["num_ratings"]
    assert rows["recommendations"] > 0 and rows["similar_movies"] > 0
    assert 0.3 < summary["model"]["rmse"] < 1.5
    # The tables and the lock's place are in the bucket, not on the local disk.
    assert {"ratings", "recommendations", "model_runs"} <= set(s3.listing("warehouse/movielens"))
    assert "_run.lock" not in s3.listing("warehouse")  # released at the end
    assert s3.secret_key not in stderr and s3.access_key not in stderr


def test_a_second_run_on_the_same_bucket_is_refused_with_exit_code_3(s3, first_run):
    _, _, second, _ = first_run
    assert second.returncode == 3, second.stderr[-2000:]
    assert "already running" in second.stderr
    assert "Traceback" not in second.stderr
    assert s3.secret_key not in second.stderr + second.stdout


def test_the_thrift_server_and_spark_sql_read_the_bucket_by_name(s3, first_run):
    _, _, _, summary = first_run
    port = free_port()
    server = subprocess.Popen(
        REELHOUSE + ["serve", "--warehouse", WAREHOUSE, "--port", str(port), "--conf",
                     "spark.ui.enabled=false"] + s3.s3a_conf(),
        stdout=subprocess.PIPE, text=True, env={**reelhouse_env(), **s3.credentials_env()})
    try:
        wait_for_ready(server)
        assert query(port, "select count(*) from movielens.ratings") == [
            (summary["table_rows"]["ratings"],)]
    finally:
        server.terminate()
        server.wait(timeout=60)
    answered = reelhouse(s3, "spark-sql", "--warehouse", WAREHOUSE, "-e",
                         "select count(*) from movielens.similar_movies", timeout=300)
    assert answered.returncode == 0, answered.stderr[-2000:]
    assert answered.stdout.split()[-1] == str(summary["table_rows"]["similar_movies"])


def test_wrong_credentials_are_one_clear_line(s3):
    done = subprocess.run(
        REELHOUSE + ["sql", "--warehouse", WAREHOUSE, "select count(*) from movielens.ratings"]
        + s3.s3a_conf(), capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
        env={**reelhouse_env(), "AWS_ACCESS_KEY_ID": "nobody", "AWS_SECRET_ACCESS_KEY": "x" * 40})
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("reelhouse: error: ") and "AccessDenied" in last, last
    assert last.endswith("check the credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                         "a profile, or fs.s3a.* settings) and the bucket's permissions"), last
