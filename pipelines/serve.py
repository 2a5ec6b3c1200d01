"""Access for analysts and BI tools: the Spark Thrift Server (HiveServer2 protocol, what JDBC and
ODBC clients speak) and Spark's own `spark-sql` shell, both over the same warehouse.

The server runs inside a normal reelhouse Spark session, so it has Delta (from the cached jars),
the UDFs and every table by name. A background thread re-reads the warehouse every few seconds:
a table a pipeline run creates appears without a restart, one it drops disappears. Existing
tables need nothing: Delta reads the latest committed version at every query, and a commit is
atomic, so a query sees the table before a run's write or after it, never half of it.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from pipelines import jvm, naming, progress, registration, storage
from pipelines.errors import ReelhouseError, spark_message
from pipelines.settings import Settings

LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# Besides refreshing whenever storage changes: a full refresh this often, for what a listing
# cannot see (a JDBC client dropping a name, a file rewritten within the same millisecond).
FULL_REFRESH_SECONDS = 60.0


def _keep_catalog_fresh(spark, settings: Settings, stop: threading.Event, seconds: float):
    """Register what pipeline runs create, change or drop. A tick first lists two folders
    (about a tenth of a full refresh's CPU) and stops there if nothing changed: an idle server
    refreshing every 2 s took a quarter of a core doing the full refresh each time."""
    registered_from = None  # the listing the catalog was last refreshed from
    last_full = time.monotonic()
    while not stop.wait(seconds):
        try:
            listing = storage.storage_listing(spark, settings)
            if listing == registered_from and time.monotonic() - last_full < FULL_REFRESH_SECONDS:
                continue
            last_full = time.monotonic()
            tables = registration.register_warehouse(spark, settings)
            # A folder that is not a table yet (its first commit has not landed): look again.
            registered_from = listing if listing[0] == set(tables) else None
        except Exception as exc:  # storage hiccup: say so, keep serving, try again next tick
            registered_from = None
            progress.say(f"catalog refresh failed (will retry): {spark_message(exc)}")


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 10000,
          refresh_seconds: float = 2.0, no_auth: bool = False,
          auth_file: Path | None = None) -> int:
    """Run the Thrift server until SIGINT or SIGTERM; returns the exit code.

    With auth_file, clients must log in with a user and password from it (HiveServer2 CUSTOM
    authentication). Beyond loopback that is required, unless the operator passes no_auth."""
    if not is_loopback(host) and not auth_file and not no_auth:
        raise ReelhouseError(
            f"Serving on {host} would expose the warehouse beyond this machine without a "
            "password: pass --auth-file FILE (users made with `reelhouse passwd`), bind to "
            "127.0.0.1, or pass --no-auth to accept that risk.")
    if not is_loopback(host) and not auth_file:
        progress.say(f"WARNING: serving on {host} with no authentication: anyone who can reach "
                     f"port {port} can read the warehouse")
    from dataclasses import replace

    from pipelines.session import create_spark

    server_conf = [("spark.hadoop.hive.server2.thrift.bind.host", host),
                   ("spark.hadoop.hive.server2.thrift.port", str(port)),
                   # One JDBC connection's temp views and settings stay its own.
                   ("spark.sql.hive.thriftServer.singleSession", "false")]
    extra_jars = []
    if auth_file:
        from pipelines import auth

        auth_file = Path(auth_file).resolve()
        if not auth_file.is_file() or not auth_file.read_text().strip():
            raise ReelhouseError(
                f"{auth_file} has no users: add one with `reelhouse passwd --auth-file "
                f"{auth_file} --user NAME`.")
        extra_jars.append(auth.authenticator_jar(settings.jars_dir, spark_home() / "jars"))
        os.environ["REELHOUSE_AUTH_FILE"] = str(auth_file)  # read by the JVM at every login
        server_conf += [("spark.hadoop.hive.server2.authentication", "CUSTOM"),
                        ("spark.hadoop.hive.server2.custom.authentication.class",
                         auth.CLASS_NAME)]
    settings = replace(settings, spark_conf=settings.spark_conf + tuple(server_conf))
    spark = create_spark(settings, app_name="reelhouse-serve", extra_jars=extra_jars)
    if auth_file:
        # Hive's login check builds a fresh HiveConf, which reads JVM system properties only.
        system = spark.sparkContext._jvm.java.lang.System
        system.setProperty("hive.server2.authentication", "CUSTOM")
        system.setProperty("hive.server2.custom.authentication.class", auth.CLASS_NAME)
    thrift = spark.sparkContext._jvm.org.apache.spark.sql.hive.thriftserver.HiveThriftServer2
    try:
        server = thrift.startWithContext(spark._jsparkSession.sqlContext())
    except Exception as exc:
        spark.stop()
        raise ReelhouseError(
            f"The Thrift server could not start on {host}:{port} "
            f"({spark_message(exc, 160)}): is the port already in use?") from exc
    stop = threading.Event()
    refresher = threading.Thread(target=_keep_catalog_fresh,
                                 args=(spark, settings, stop, refresh_seconds), daemon=True)
    refresher.start()

    def request_stop(signum, _frame):
        progress.say(f"received {signal.Signals(signum).name}: stopping")
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    progress.say(f"serving {settings.warehouse} at jdbc:hive2://{host}:{port}/{settings.schema} "
                 f"({'password required' if auth_file else 'no authentication'}; Ctrl-C stops)")
    print(f"READY jdbc:hive2://{host}:{port}/{settings.schema}", flush=True)
    while not stop.wait(0.5):
        pass
    refresher.join(timeout=refresh_seconds + 5)
    try:
        server.stop()
    finally:
        spark.stop()
    progress.say("server stopped")
    return 0


# --- spark-sql --------------------------------------------------------------------------------

def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def _local_listing(settings: Settings) -> tuple[list[str], dict[str, str]]:
    """Tables and views of a warehouse on the local disk, read without starting Spark."""
    root = Path(settings.warehouse.removeprefix("file:")) / settings.schema
    tables = sorted(p.name for p in root.glob("*") if any((p / "_delta_log").glob("0*"))
                    and naming.IDENTIFIER.match(p.name)) if root.is_dir() else []
    views = {p.stem: p.read_text() for p in sorted((root / "_views").glob("*.sql"))
             if naming.IDENTIFIER.match(p.stem)}
    return tables, views


def spark_sql_command(settings: Settings, user_args: list[str], init_file: Path) -> list[str]:
    """Spark's own spark-sql shell with our settings, our jars and the catalog registration."""
    from pipelines.session import spark_config

    if settings.warehouse.startswith("file:") or "://" not in settings.warehouse:
        tables, views = _local_listing(settings)
    else:  # object storage: list it with Spark's file system classes
        from pipelines.session import create_spark

        spark = create_spark(settings, register=False)
        tables = storage.list_tables_on_storage(spark, settings)
        views = registration.stored_views(spark, settings)
        spark.stop()
    init_file.parent.mkdir(parents=True, exist_ok=True)
    init_file.write_text(registration.registration_script(settings, tables, views)
                         + f"use {settings.schema};\n")
    conf = spark_config(settings, jvm.jars_for(settings, quiet=True))
    command = [str(spark_home() / "bin" / "spark-sql"), "--master", conf.pop("spark.master")]
    for key, value in conf.items():
        if not key.startswith("spark.pyspark."):
            command += ["--conf", f"{key}={value}"]
    return command + ["-i", str(init_file)] + user_args


def spark_sql(settings: Settings, user_args: list[str]) -> int:
    jvm.check_java()
    command = spark_sql_command(settings, user_args,
                                settings.target_dir / "spark-sql-init.sql")
    env = {**os.environ, "SPARK_HOME": str(spark_home())}
    return subprocess.call(command, env=env, stdin=sys.stdin)
