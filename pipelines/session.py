"""The one Spark session factory: every command, test and server goes through `spark_config`.

Catalog design: Spark's in-memory catalog, filled at every start from the warehouse itself
(`registration.register_warehouse`). Each table is a Delta table at
<warehouse>/movielens/<name>, and
its `_delta_log` is the source of truth, so any number of processes (pipeline runs, `spark-sql`,
the Thrift server) can see the same tables by name with no shared metastore to lock: embedded
Derby admits one JVM, and a metastore database would be one more service to run and keep in
step with the files. The README's design notes give the full reasoning.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from pipelines import jvm, progress
from pipelines.errors import ReelhouseError, spark_message
from pipelines.settings import Settings

LOG4J_CONFIG = Path(__file__).with_name("log4j2.properties")
LOG4J_OPTION = f"-Dlog4j2.configurationFile=file:{LOG4J_CONFIG}"  # every JVM: driver, executors


def default_parallelism(settings: Settings) -> int | None:
    """Shuffle partitions sized for the machine: Spark's 200 make MovieLens-sized SQL several
    times slower on a laptop; two tasks per core keeps both busy without tiny-task overhead.
    None off `local`: a cluster's cores are known once its executors register
    (size_for_cluster)."""
    if not settings.is_local:
        return None
    inside = settings.master[len("local["):-1] if settings.master.startswith("local[") else "1"
    if inside in ("*", ""):
        cores = os.cpu_count() or 2
    else:
        cores = int(inside.split(",")[0] or 1)
    return max(2, 2 * cores)


def parallelism(spark) -> int:
    """Tasks per wide stage, and ALS blocks: spark.default.parallelism where it is set (always
    on `local`), else two per executor core, as default_parallelism."""
    given = spark.conf.get("spark.default.parallelism", None)
    return int(given) if given else max(2, 2 * spark.sparkContext.defaultParallelism)


EXECUTORS_WAIT_SECONDS = 60  # for the first executor
EXECUTORS_SETTLE_SECONDS = 4  # no new executor for this long: all that were asked for are up
# Delta reconstructs a table's snapshot in this many tasks. Our logs list tens to a few hundred
# files, so a few tasks suffice on any cluster; Delta's 50 (or 200) make every small Delta
# operation a many-task job.
MAX_SNAPSHOT_PARTITIONS = 8


def executors_registered(spark) -> int:
    """Executors registered so far (the driver's own entry left out)."""
    return len(spark.sparkContext._jsc.sc().statusTracker().getExecutorInfos()) - 1


def size_for_cluster(spark, settings: Settings) -> int:
    """Off `local`: wait until the cluster's executors have registered, then size shuffle
    partitions and Delta's snapshot partitions from their cores (a --conf value stays as
    given). Returns the parallelism. Without this every small query ran Spark's 200 tasks:
    on two one-core workers a staging view took 95-159 s to build, against 1 s on local[2]."""
    sc = spark.sparkContext
    deadline = time.monotonic() + EXECUTORS_WAIT_SECONDS
    while executors_registered(spark) < 1:
        if sc._jsc.sc().isStopped():  # Spark gave up on the master ("All masters are
            raise ReelhouseError(       # unresponsive")
                f"Spark could not register with {settings.master}: check the --master URL "
                "and that the master is up.")
        if time.monotonic() > deadline:
            raise ReelhouseError(
                f"No executor registered with {settings.master} in {EXECUTORS_WAIT_SECONDS} s: "
                "check that its workers are up and have the cores and memory asked for "
                "(spark.executor.memory, spark.executor.cores).")
        time.sleep(0.25)
    seen, settled = executors_registered(spark), time.monotonic()
    while time.monotonic() - settled < EXECUTORS_SETTLE_SECONDS:
        time.sleep(0.25)
        if (now := executors_registered(spark)) != seen:
            seen, settled = now, time.monotonic()
    tasks = parallelism(spark)
    given = {key for key, _ in settings.spark_conf}
    for key, value in (("spark.sql.shuffle.partitions", tasks),
                       ("spark.databricks.delta.snapshotPartitions",
                        min(sc.defaultParallelism, MAX_SNAPSHOT_PARTITIONS))):
        if key not in given:
            spark.conf.set(key, str(value))
    return tasks


# Spark SQL settings for a small warehouse. Adaptive query execution re-plans a query at every
# stage, and generated code is compiled (Janino, then the JIT) for every new plan: on a few
# hundred thousand ratings neither pays for itself, and Spark's own evaluators (which Spark
# tests against the generated code) give the same rows. The build and evaluate steps use them
# below the size; training keeps Spark's defaults, as ALS and the top-k lists ran slower
# interpreted. Measured in bench/README.md ("Small-data SQL settings").
SMALL_DATA_SQL_CONF = {"spark.sql.adaptive.enabled": "false",
                       "spark.sql.codegen.wholeStage": "false",
                       "spark.sql.codegen.factoryMode": "NO_CODEGEN"}
SMALL_DATA_MAX_BYTES = 4 << 20  # of raw_ratings' Parquet files: about 250,000 ratings


@contextmanager
def small_data_sql(spark, settings: Settings):
    """SMALL_DATA_SQL_CONF while the block runs, when the warehouse's raw ratings are at most
    SMALL_DATA_MAX_BYTES (from Delta's checksum file: no Spark job); Spark's values again
    after it. A key given with --conf is left as given."""
    from pipelines import delta_log

    size = delta_log.size_in_bytes(spark, settings, "raw_ratings")
    given = {key for key, _ in settings.spark_conf}
    changes = {} if size is None or size > SMALL_DATA_MAX_BYTES else {
        key: value for key, value in SMALL_DATA_SQL_CONF.items() if key not in given}
    before = {key: spark.conf.get(key, None) for key in changes}
    for key, value in changes.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


def driver_java_options(settings: Settings, jars: list[Path],
                        record_start_cache: Path | None = None) -> str:
    """Our log4j settings and, on Java 25+, the JVM start cache (jvm.start_cache_path): read
    if `reelhouse setup` recorded one, or recorded into `record_start_cache` as the JVM exits."""
    options = [LOG4J_OPTION]
    if record_start_cache is not None:
        options += [f"-XX:AOTCacheOutput={record_start_cache}", "-Xlog:disable",
                    "-Xlog:all=error:stderr"]  # not its warnings about classes it leaves out
        return " ".join(options)
    cache = jvm.start_cache_path(settings.jars_dir, jars)
    if cache is not None and cache.is_file():
        # The JVM's own warnings (e.g. a cache it cannot use) go to stderr, not stdout: stdout
        # carries query results.
        options += [f"-XX:AOTCache={cache}", "-Xlog:disable", "-Xlog:all=warning:stderr"]
    return " ".join(options)


def spark_config(settings: Settings, jars: list[Path],
                 record_start_cache: Path | None = None) -> dict[str, str]:
    """Every Spark setting we rely on, in one place, as plain key/value pairs. The same pairs
    are passed as `--conf` to `spark-sql` and the Thrift server."""
    partitions = default_parallelism(settings)
    conf = {
        "spark.master": settings.master,
        "spark.driver.memory": settings.driver_memory,
        "spark.jars": ",".join(str(j) for j in jars),
        # Also on the driver's own classpath: Thrift server sessions are created on threads
        # whose class loader does not see spark.jars (beeline then fails with
        # ClassNotFoundException: DeltaCatalog).
        "spark.driver.extraClassPath": os.pathsep.join(str(j) for j in jars),
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        # The catalog is rebuilt from the Delta logs in every process (see module docstring).
        "spark.sql.catalogImplementation": "in-memory",
        "spark.sql.warehouse.dir": settings.warehouse,
        # Delta rebuilds a table's file list (its "snapshot state") in Spark jobs, and every scan
        # runs one more ("Filtering files for query"): half the pipeline's job time at 100k
        # ratings (bench event logs). Its default of 50 partitions makes each such job 50
        # tasks; our tables have tens of files, so one partition on a single machine (on a
        # cluster: size_for_cluster, or MAX_SNAPSHOT_PARTITIONS for spark-sql and the server).
        "spark.databricks.delta.snapshotPartitions": "1" if settings.is_local
        else str(MAX_SNAPSHOT_PARTITIONS),
        "spark.driver.extraJavaOptions": driver_java_options(settings, jars,
                                                             record_start_cache),
        "spark.executor.extraJavaOptions": LOG4J_OPTION,
        # Models build side by side on threads (runner.build); each thread's jobs go to a
        # pool of their own, and FAIR shares the cores between pools, so a model's small jobs
        # (Delta log reads, commits) are not queued behind another model's big scan. Train's
        # output writes stay in the default pool, first come first served: side by side in
        # pools of their own they took 360 s at 10M ratings against 276 s.
        "spark.scheduler.mode": "FAIR",
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.showConsoleProgress": "true" if sys.stderr.isatty() else "false",
        "spark.pyspark.python": sys.executable,
        "spark.pyspark.driver.python": sys.executable,
    }
    if partitions is not None:
        conf["spark.sql.shuffle.partitions"] = conf["spark.default.parallelism"] = str(partitions)
    if settings.uses_s3a:
        # Delta's log store for s3a://, named so the choice is visible: S3SingleDriverLogStore
        # (Delta's default) is safe while one driver writes at a time, which the run lock
        # makes so across machines (a conditional PUT on the bucket, lock.py). Writers on
        # several clusters at once would need S3DynamoDBLogStore and a DynamoDB table.
        conf["spark.delta.logStore.s3a.impl"] = "io.delta.storage.S3SingleDriverLogStore"
    conf.update(dict(settings.spark_conf))
    return conf


def quiet_pyspark_error_logs() -> None:
    """PySpark logs every SQL error it raises, JVM stack trace included, as a JSON line on
    stderr, even when the caller handles the error: reelhouse says what failed in one sentence
    (errors.spark_message), so those logs are switched off."""
    from pyspark.logger import PySparkLogger

    for name in ("SQLQueryContextLogger", "DataFrameQueryContextLogger"):
        PySparkLogger.getLogger(name).setLevel(logging.CRITICAL + 1)


def check_master_reachable(master: str, timeout: float = 3.0) -> None:
    """A standalone master (spark://host:port, or several for high availability) must accept
    connections: otherwise Spark retries for a minute before giving up, so say it at once."""
    if not master.startswith("spark://"):
        return
    addresses = master.removeprefix("spark://").split(",")
    for address in addresses:
        host, _, port = address.rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=timeout).close()
            return
        except (OSError, ValueError):
            continue
    raise ReelhouseError(f"Nothing accepts connections at {master}: start the master (reelhouse "
                         "cluster start, on this machine) or fix --master.")


def create_spark(settings: Settings, app_name: str = "reelhouse", register: bool = True,
                 extra_jars: list[Path] | None = None, record_start_cache: Path | None = None):
    """A SparkSession with Delta, the warehouse's tables registered by name and our UDFs."""
    jvm.check_java()
    check_master_reachable(settings.master)
    jars = jvm.jars_for(settings) + list(extra_jars or [])
    from pyspark.sql import SparkSession

    # With native BLAS (Debian's OpenBLAS), one BLAS thread per Spark task: Spark already runs
    # a task per core, and OpenBLAS's own threads would fight them for the cores.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    builder = SparkSession.builder.appName(app_name)
    for key, value in spark_config(settings, jars, record_start_cache).items():
        builder = builder.config(key, value)
    try:
        spark = builder.getOrCreate()
    except Exception as exc:  # the JVM did not start: say so in one sentence
        raise ReelhouseError(
            f"Spark could not start ({spark_message(exc, 200)}): check Java 17, "
            "the --master URL and the --conf settings.") from exc
    spark.sparkContext.setLogLevel("ERROR")
    quiet_pyspark_error_logs()
    spark.sparkContext.setCheckpointDir(settings.checkpoint_location)
    if not settings.is_local:
        progress.say(f"on {settings.master}: {size_for_cluster(spark, settings)} tasks per "
                     f"stage for {spark.sparkContext.defaultParallelism} executor cores")
    if register:
        from pipelines import registration

        registration.register_udfs(spark, settings)  # first: views may call the functions
        registration.register_warehouse(spark, settings)
    return spark
