"""The `reelhouse` command. Each subcommand is a verb with one short handler below (its docstring
is the command's help), which calls the step module that does the work.

Exit codes: 0 success, 1 failure (a one-line message on stderr), 2 bad usage, 3 another run
holds the warehouse (`reelhouse run` only).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import decimal
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from pipelines import progress, sql_project
from pipelines.errors import ReelhouseError, spark_message
from pipelines.settings import STEPS, Settings, normalise_warehouse, parse_conf

# A command's handler: the parsed flags and the settings they give; returns the exit code, or
# None for 0.
Handler = Callable[[argparse.Namespace, Settings], int | None]


# --- options -------------------------------------------------------------------------------

def _common(parser: argparse.ArgumentParser) -> None:
    """Options every command accepts."""
    parser.add_argument("--warehouse", help="warehouse root: a local path or any Hadoop URI "
                        "(s3a://, hdfs://, abfss://); default ./warehouse or $REELHOUSE_WAREHOUSE")
    parser.add_argument("--master", help="Spark master URL (default local[*] or "
                        "$REELHOUSE_MASTER)")
    parser.add_argument("--conf", action="append", metavar="KEY=VALUE",
                        help="extra Spark setting; may repeat")
    parser.add_argument("--project-dir", metavar="DIR",
                        help="the SQL project: a folder with reelhouse_project.yml (and models/, "
                             "macros/, tests/, udfs/); default $REELHOUSE_PROJECT_DIR or the "
                             "one installed with reelhouse")


def _with_vars(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--var", action="append", metavar="NAME=VALUE",
                        help="value for var() in the SQL models; may repeat")


def _with_threads(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, metavar="N",
                        help="models built side by side when their inputs are ready "
                             "(default 4 or $REELHOUSE_THREADS; 1 builds one at a time)")


def _with_select(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--select", "-s", action="append", metavar="MODEL",
                        help="models to build: m, m+ (and downstream), +m (and upstream)")


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole numbers like 10,20, got {text!r}") \
            from None


def _float_list(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 0.05,0.1, got {text!r}") \
            from None


def _with_train_options(parser: argparse.ArgumentParser) -> None:
    """ALS options; each defaults to None so only what the user typed overrides."""
    parser.add_argument("--rank", type=int, help="latent factors (default 30)")
    parser.add_argument("--max-iter", type=int, help="ALS iterations (default 15)")
    parser.add_argument("--reg-param", type=float, help="regularisation (default 0.15)")
    parser.add_argument("--nonnegative", action="store_true", default=None,
                        help="nonnegative factors")
    parser.add_argument("--seed", type=int, help="random seed (default 42)")
    parser.add_argument("--top-n", type=int, help="recommendations and similar movies per "
                        "user/movie (default 10)")
    parser.add_argument("--min-movie-ratings", type=int, help="train ratings a movie needs "
                        "to be recommended or named similar (default 10)")
    parser.add_argument("--user-bias-damping", type=float, help="default 5")
    parser.add_argument("--movie-bias-damping", type=float, help="default 10")
    bias = parser.add_mutually_exclusive_group()
    bias.add_argument("--bias-centred", dest="bias_centred", action="store_true", default=None,
                      help="fit ALS on ratings less damped biases (default for explicit)")
    bias.add_argument("--no-bias", dest="bias_centred", action="store_false",
                      help="fit ALS on the ratings themselves")
    lists = parser.add_argument_group(
        "the list model", "what serves recommendations and similar movies (the options above "
        "are the rating model's, which gives predictions and the RMSE)")
    lists.add_argument("--list-model", choices=("implicit", "explicit"), default="implicit",
                       help="implicit-feedback ALS (default, measured best on ranking) or the "
                            "rating model itself")
    lists.add_argument("--list-rank", type=int, help="implicit list model rank (default 64)")
    lists.add_argument("--list-max-iter", type=int, help="default 15")
    lists.add_argument("--list-reg-param", type=float, help="default 0.3")
    lists.add_argument("--alpha", type=float, help="confidence = 1 + alpha * value (default 1)")
    lists.add_argument("--confidence", choices=("rating", "binary", "threshold"),
                       help="what a rating says: the rating itself (default), 1 for every "
                            "rating, or 1 for ratings >= --confidence-threshold only")
    lists.add_argument("--confidence-threshold", type=float, help="default 4.0")


def _summary(handler: Handler) -> str:
    """A handler's help text: the first paragraph of its docstring, on one line."""
    return " ".join(handler.__doc__.split("\n\n")[0].split())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reelhouse",
        description="A SQL-first movie-recommendation warehouse on Spark SQL and Delta Lake.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Handler) -> argparse.ArgumentParser:
        text = _summary(handler)
        sub = commands.add_parser(name, help=text, description=text)
        _common(sub)
        sub.set_defaults(func=handler)
        return sub

    run = command("run", run_command)
    run.add_argument("--data", help="a MovieLens folder (default: a built-in synthetic dataset)")
    run.add_argument("--steps", default=",".join(STEPS), metavar="LIST",
                     help=f"comma-separated steps to run, in order (default {','.join(STEPS)})")
    run.add_argument("--force", action="store_true",
                     help="rebuild every model (and retrain) even if its inputs are unchanged")
    run.add_argument("--summary", metavar="FILE",
                     help="also write the run's pipeline_runs row, the rows of every table and "
                          "the model's RMSE as JSON to FILE (for schedulers and the bench)")
    _with_vars(run)
    _with_select(run)
    _with_threads(run)

    ingest = command("ingest", ingest_command)
    ingest.add_argument("--data", required=True, help="a MovieLens folder")

    build = command("build", build_command)
    build.add_argument("--force", action="store_true",
                       help="rebuild models even if their SQL and inputs are unchanged")
    _with_vars(build)
    _with_select(build)
    _with_threads(build)

    compile_ = command("compile", compile_command)
    _with_vars(compile_)
    _with_select(compile_)

    sql = command("sql", sql_command)
    sql.add_argument("query", help="the SQL text")
    sql.add_argument("--format", choices=("table", "csv", "json"), default="table")

    generate = command("generate", generate_command)
    generate.add_argument("--out", required=True, help="folder to write")
    generate.add_argument("--ratings", type=int, required=True, help="number of ratings")
    generate.add_argument("--users", type=int)
    generate.add_argument("--movies", type=int)
    generate.add_argument("--seed", type=int, default=42)

    download = command("download", download_command)
    download.add_argument("name", help="ml-latest-small, ml-latest, ml-100k, ml-1m, ml-10m, "
                          "ml-20m, ml-25m or ml-32m")
    download.add_argument("--out", default="data", help="folder to extract into (default data/)")
    download.add_argument("--force", action="store_true", help="download even if present")

    serve = command("serve", serve_command)
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    serve.add_argument("--port", type=int, default=10000)
    serve.add_argument("--refresh-seconds", type=float, default=2.0,
                       help="how often to pick up tables a pipeline run created or dropped")
    serve.add_argument("--auth-file", default=os.environ.get("REELHOUSE_AUTH_FILE"),
                       help="require a user and password from this file (see `reelhouse "
                            "passwd`); default $REELHOUSE_AUTH_FILE")
    serve.add_argument("--no-auth", action="store_true",
                       help="allow a non-loopback address without authentication (unsafe)")

    api = command("api", api_command)
    api.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    api.add_argument("--port", type=int, default=8000)
    api.add_argument("--token-file", metavar="FILE",
                     help="require `Authorization: Bearer <the file's first line>`; default "
                          "the token in $REELHOUSE_API_TOKEN, if set")
    api.add_argument("--no-auth", action="store_true",
                     help="allow a non-loopback address without a token (unsafe)")
    api.add_argument("--reload-seconds", type=float, default=2.0,
                     help="how often to look for a newly finished model run")

    cluster = command("cluster", cluster_command)
    cluster.add_argument("action", choices=("start", "stop", "status"))
    cluster.add_argument("--workers", type=int, default=2, help="workers to start (default 2)")
    cluster.add_argument("--cores", type=int, default=1, help="cores per worker (default 1)")
    cluster.add_argument("--memory", default="2g", help="memory per worker (default 2g)")
    cluster.add_argument("--host", default="127.0.0.1",
                         help="address the master and workers bind (default loopback)")
    cluster.add_argument("--dir", type=Path, metavar="DIR",
                         help="the cluster's pids, logs and work folders (default "
                              "~/.cache/reelhouse/cluster)")

    passwd = command("passwd", passwd_command)
    passwd.add_argument("--auth-file", required=True)
    passwd.add_argument("--user", required=True)

    command("spark-sql", spark_sql_command)  # its own arguments: see main()

    history = command("history", history_command)
    history.add_argument("table", help="table name, e.g. ratings")
    history.add_argument("--limit", type=int, default=20)
    history.add_argument("--format", choices=("table", "csv", "json"), default="table")

    restore = command("restore", restore_command)
    restore.add_argument("table", help="table name, e.g. ratings")
    restore.add_argument("--version", type=int, required=True)

    maintain = command("maintain", maintain_command)
    maintain.add_argument("--retain-hours", type=float, default=168.0,
                          help="keep files needed for time travel this far back (default 168, "
                               "Delta's default; lower needs --unsafe-retention)")
    maintain.add_argument("--unsafe-retention", action="store_true",
                          help="allow --retain-hours below 168 (breaks older time travel and "
                               "readers of old versions)")

    setup = command("setup", setup_command)
    setup.add_argument("--s3a", action="store_true",
                       help="also fetch S3A's jars for s3a:// warehouses and data (hadoop-aws "
                            "and the AWS SDK bundle, about 690 MB; otherwise fetched on first "
                            "use)")

    train = command("train", train_command)
    _with_train_options(train)
    train.add_argument("--params", choices=("best",),
                       help="best: the lowest validation RMSE of the latest `reelhouse tune` "
                            "(flags given as well still win)")

    tune = command("tune", tune_command)
    tune.add_argument("--ranks", type=_int_list, metavar="LIST",
                      help="comma-separated ranks (default 10,20,30,50; ranking: 32,64,96)")
    tune.add_argument("--reg-params", type=_float_list, metavar="LIST",
                      help="comma-separated regParams (default 0.05,0.1,0.15,0.2; ranking: "
                      "0.1,0.3,1)")
    tune.add_argument("--max-iters", type=_int_list, default=(15,), metavar="LIST",
                      help="comma-separated maxIters (default 15)")
    tune.add_argument("--validation-fraction", type=float, default=0.2,
                      help="share of the train rows held out to score trials (default 0.2)")
    tune.add_argument("--parallelism", type=int, default=2,
                      help="trials fitted at the same time (default 2)")
    tune.add_argument("--seed", type=int, default=42, help="ALS seed and validation split seed")
    tune.add_argument("--objective", choices=("rmse", "ranking"), default="rmse",
                      help="rmse: the rating model by validation RMSE (default); ranking: the "
                           "list model (implicit ALS, with the rating model as a candidate) by "
                           "validation NDCG@10")
    tune.add_argument("--alphas", type=_float_list, default=(1.0,), metavar="LIST",
                      help="implicit confidence weights, ranking objective (default 1)")
    bias = tune.add_mutually_exclusive_group()
    bias.add_argument("--bias-centred", dest="bias_centred", action="store_true", default=True,
                      help="fit ALS on rating less damped biases (the default)")
    bias.add_argument("--no-bias", dest="bias_centred", action="store_false",
                      help="fit ALS on the ratings themselves")

    recommend = command("recommend", recommend_command)
    who = recommend.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", type=int, help="a user id from movielens.ratings")
    who.add_argument("--ratings", type=Path, metavar="FILE",
                     help="a new user's ratings: CSV movie_id,rating (header optional)")
    recommend.add_argument("--top-n", type=int, help="how many (default: the run's top N "
                           "for --user, 10 for --ratings)")
    recommend.add_argument("--format", choices=("text", "csv", "json"), default="text")
    evaluate = command("evaluate", evaluate_command)
    evaluate.add_argument("--force", action="store_true",
                          help="rebuild every report table even if its inputs are unchanged")
    _with_vars(evaluate)

    report = command("report", report_command)
    report.add_argument("--out", metavar="DIR",
                        help="folder for report.html (default target/report)")
    return parser


# --- settings ------------------------------------------------------------------------------

def settings_from(args: argparse.Namespace) -> Settings:
    """The flags over the environment over the defaults, checked before any work starts."""
    overrides = {}
    if args.warehouse:
        overrides["warehouse"] = normalise_warehouse(args.warehouse)
    if args.master:
        overrides["master"] = args.master
    overrides["spark_conf"] = parse_conf(args.conf)
    threads = getattr(args, "threads", None)
    if threads is not None:
        if threads < 1:
            raise ReelhouseError(f"--threads takes a whole number >= 1, got {threads}.")
        overrides["threads"] = threads
    if args.project_dir:
        overrides["project_dir"] = Path(args.project_dir).expanduser().resolve()
    settings = Settings(**overrides)
    check_project_dir(settings.project_dir)
    return settings


def check_project_dir(folder: Path) -> None:
    """A SQL project is a folder holding its manifest: anything else would load as a project
    with no models or no step tags, and build nothing without saying why."""
    if not folder.exists():
        problem = "does not exist"
    elif not folder.is_dir():
        problem = "is not a folder"
    elif not (folder / sql_project.MANIFEST).is_file():
        problem = f"has no {sql_project.MANIFEST}"
    else:
        return
    raise ReelhouseError(f"The SQL project {folder} {problem}: point --project-dir (or "
                         f"REELHOUSE_PROJECT_DIR) at a folder holding {sql_project.MANIFEST} "
                         "(and models/, macros/, tests/, udfs/).")


# --- the commands, in the order of `reelhouse --help` ---------------------------------------

def run_command(args: argparse.Namespace, settings: Settings) -> None:
    """ingest a dataset and build every table, end to end

    Example: reelhouse run --data data/ml-latest-small --summary target/run.json
    """
    from pipelines import lock, pipeline, rendering, run_ids, session

    cli_vars = rendering.parse_vars(args.var)
    steps = tuple(s.strip() for s in args.steps.split(",") if s.strip())
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        raise ReelhouseError(f"--steps {','.join(unknown)}: the steps are {', '.join(STEPS)}.")
    run_id = run_ids.new_run_id()
    # The lock comes first: a second run is refused at once, before Spark even starts, except
    # on object storage, which only Spark's Hadoop file system reaches.
    jars = _data_jars(settings, args.data)
    spark = (session.create_spark(settings, extra_jars=jars)
             if lock.on_object_storage(settings) else None)
    with lock.run_lock(settings, run_id, spark) as abandoned:
        data_dir = args.data or pipeline.default_dataset(Path.cwd())  # a path or a URI
        spark = spark or session.create_spark(settings, extra_jars=jars)
        progress.say(f"run {run_id} started")
        row = pipeline.run_pipeline(spark, settings, data_dir, run_id, cli_vars, args.select,
                                    force=args.force, steps=steps, abandoned=abandoned)
        if args.summary:
            pipeline.write_summary(spark, settings, row, Path(args.summary))
    progress.say(f"run {run_id} succeeded; warehouse ready at {settings.warehouse}")


def ingest_command(args: argparse.Namespace, settings: Settings) -> None:
    """land a MovieLens folder's files in the raw tables

    Example: reelhouse ingest --data data/ml-latest-small
    """
    from pipelines import ingest, session

    spark = session.create_spark(settings, extra_jars=_data_jars(settings, args.data))
    ingest.ingest_dataset(spark, settings, args.data)


def _data_jars(settings: Settings, data: str | None) -> list[Path]:
    """S3A's jars for a dataset on s3a:// when the settings alone do not call for them."""
    from pipelines import jvm

    wanted = bool(data) and data.startswith("s3a://") and not settings.uses_s3a
    return jvm.ensure_s3a_jars(settings.jars_dir) if wanted else []


def build_command(args: argparse.Namespace, settings: Settings) -> None:
    """build the SQL models (and run their data tests)

    Example: reelhouse build --select ratings_split+ --var split_method=temporal
    """
    from pipelines import evaluate, rendering, runner, session, sql_project

    cli_vars = rendering.parse_vars(args.var)
    spark = session.create_spark(settings)
    project = sql_project.load_project(settings, cli_vars=cli_vars)
    # Without --select: the warehouse models; the reports read train's output and are
    # built by `evaluate` (name them in --select to build them here).
    runner.build(spark, project, args.select or evaluate.warehouse_models(project),
                 force=args.force)


def compile_command(args: argparse.Namespace, settings: Settings) -> None:
    """render the SQL models into target/compiled/"""
    from pipelines import rendering, runner, sql_project

    project = sql_project.load_project(settings, cli_vars=rendering.parse_vars(args.var))
    for path in runner.compile_project(project, args.select):
        print(path)


def sql_command(args: argparse.Namespace, settings: Settings) -> None:
    """run a Spark SQL query against the warehouse

    Example: reelhouse sql --format csv "select * from movielens.movie_stats limit 10"
    """
    from pipelines import session

    spark = session.create_spark(settings)
    try:
        print_rows(spark.sql(args.query), args.format)
    except Exception as exc:  # Spark's message, one line: it names the problem
        raise ReelhouseError(f"The query failed: {spark_message(exc)}") from exc


def generate_command(args: argparse.Namespace, settings: Settings) -> None:
    """write a synthetic dataset in the ml-latest CSV layout

    Example: reelhouse generate --out data/synthetic --ratings 100000
    """
    from pipelines.generate import generate_dataset

    meta = generate_dataset(Path(args.out), args.ratings, args.users, args.movies, args.seed,
                            progress=lambda d, t: progress.bar(d, t, "generate"))
    progress.say(f"wrote {meta['num_ratings']:,} ratings by {meta['num_users']:,} users on "
                 f"{meta['num_movies']:,} movies to {args.out}")


def download_command(args: argparse.Namespace, settings: Settings) -> None:
    """fetch a MovieLens release from GroupLens

    Example: reelhouse download ml-latest-small --out data
    """
    from pipelines.download import download_dataset

    # base_url None: $REELHOUSE_MOVIELENS_URL (a mirror) or GroupLens.
    folder = download_dataset(args.name, Path(args.out), base_url=None, force=args.force,
                              progress=lambda d, t: progress.bar(d, t, args.name))
    progress.say(f"{args.name} is in {folder}; load it with: reelhouse run --data {folder}")


def serve_command(args: argparse.Namespace, settings: Settings) -> int:
    """serve the warehouse over JDBC/ODBC (Spark Thrift Server)

    Example: reelhouse serve --host 0.0.0.0 --auth-file /etc/reelhouse/users
    """
    from pipelines import serve

    return serve.serve(settings, args.host, args.port, args.refresh_seconds, args.no_auth,
                       Path(args.auth_file) if args.auth_file else None)


def cluster_command(args: argparse.Namespace, settings: Settings) -> None:
    """start, stop or show a Spark standalone cluster on this machine, to run on with --master

    Example: reelhouse run --master "$(reelhouse cluster start --workers 2)"; then
    reelhouse cluster stop
    """
    from pipelines import cluster

    folder = (args.dir or settings.jars_dir.parent / "cluster").expanduser().resolve()
    if args.action == "start":
        print(cluster.start(folder, args.workers, args.cores, args.memory, args.host).master_url)
    elif args.action == "stop":
        progress.say(f"stopped {cluster.stop(folder)} cluster processes from {folder}")
    else:
        state = cluster.read_state(folder)
        if state is None:
            raise ReelhouseError(f"No cluster was started from {folder}: reelhouse cluster "
                                 "start.")
        workers, cores = state.workers_alive()
        print(f"{state.master_url}\t{workers} workers alive\t{cores} cores\t{state.web_url}")


def api_command(args: argparse.Namespace, settings: Settings) -> int:
    """serve recommendations over HTTP (JSON API, OpenAPI docs at /docs, a page at /)

    Example: reelhouse api --port 8000, then open http://127.0.0.1:8000/
    """
    # One request at a time runs on the event loop: numpy's BLAS thread pool spinning on the
    # other core beside it only takes that core from the clients (set before numpy loads).
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from pipelines import api

    token, where = os.environ.get("REELHOUSE_API_TOKEN") or None, "REELHOUSE_API_TOKEN"
    if args.token_file:
        path = Path(args.token_file)
        if not path.is_file():
            raise ReelhouseError(f"--token-file {path} is not a file: write the token on its "
                                 "first line.")
        token, where = (path.read_text().splitlines() or [""])[0].strip(), str(path)
    if token is not None and len(token) < 16:
        raise ReelhouseError(f"The token in {where} is shorter than 16 characters: use a long "
                             "random one (e.g. `openssl rand -hex 32`).")
    if not 0 < args.reload_seconds <= 3600:
        raise ReelhouseError("--reload-seconds must be more than 0 and at most 3600.")
    return api.serve(settings, args.host, args.port, token, args.no_auth, args.reload_seconds)


def passwd_command(args: argparse.Namespace, settings: Settings) -> None:
    """add or change a user in a Thrift server credentials file (password read from stdin, or
    asked for on a terminal)

    Example: reelhouse passwd --auth-file /etc/reelhouse/users --user analyst
    """
    import getpass

    from pipelines import auth

    if sys.stdin.isatty():
        password = getpass.getpass(f"password for {args.user}: ")
    else:
        password = sys.stdin.readline().rstrip("\n")
    auth.set_password(Path(args.auth_file), args.user, password)
    progress.say(f"{args.user} can now log in to `reelhouse serve --auth-file "
                 f"{args.auth_file}`")


def spark_sql_command(args: argparse.Namespace, settings: Settings) -> int:
    """Spark's spark-sql shell over the warehouse; other arguments (-e, -f, ...) go to spark-sql

    Example: reelhouse spark-sql -e "show tables in movielens"
    """
    from pipelines import serve

    return serve.spark_sql(settings, args.spark_sql_args)


def history_command(args: argparse.Namespace, settings: Settings) -> None:
    """a table's Delta history: every version, when, what wrote it

    Example: reelhouse history ratings --limit 5
    """
    from pipelines import maintenance, session

    spark = session.create_spark(settings)
    print_rows(maintenance.history(spark, settings, args.table, args.limit), args.format)


def restore_command(args: argparse.Namespace, settings: Settings) -> None:
    """put a table back to an earlier Delta version (a new commit)

    Example: reelhouse restore ratings --version 3
    """
    from pipelines import maintenance, session

    maintenance.restore_version(session.create_spark(settings), settings, args.table,
                                args.version)


def maintain_command(args: argparse.Namespace, settings: Settings) -> None:
    """compact small files (OPTIMIZE) and remove unreferenced old files (VACUUM) in every
    table

    Example: reelhouse maintain --retain-hours 336
    """
    from pipelines import maintenance, session

    maintenance.maintain(session.create_spark(settings), settings, args.retain_hours,
                         args.unsafe_retention)


def setup_command(args: argparse.Namespace, settings: Settings) -> None:
    """fetch and cache Delta Lake's jars, check Java (run once; later starts are offline)"""
    from pipelines import jvm

    version = jvm.check_java()
    jars = jvm.jars_for(settings)
    if args.s3a and not settings.uses_s3a:
        jars += jvm.ensure_s3a_jars(settings.jars_dir)
    progress.say(f"Java {version} ok; jars cached: {', '.join(j.name for j in jars)}")
    cache = jvm.start_cache_path(settings.jars_dir, jars)
    if cache is not None and not cache.is_file():
        from pipelines import pipeline

        try:
            with progress.step(f"recording the JVM start cache {cache} (once per Java and "
                               "Spark install; later starts take about half the time)"):
                pipeline.record_start_cache(settings, cache)
        except Exception as exc:  # an optimisation only: say so and carry on
            progress.say(f"could not record the JVM start cache ({spark_message(exc)}): "
                         "commands still work, they start without it")
    elif cache is not None:
        progress.say(f"JVM start cache: {cache}")


def train_command(args: argparse.Namespace, settings: Settings) -> None:
    """fit ALS on the train split and publish predictions, recommendations, similar movies and
    the run

    Example: reelhouse train --rank 50 --list-model explicit
    """
    from pipelines import session, train

    # Typed flags are checked here: a bad value fails before Spark starts.
    models = None if args.params == "best" else typed_models(args)
    spark = session.create_spark(settings)
    if models is None:
        models = best_models(spark, settings, args)
    train.train(spark, settings, *models)


def tune_command(args: argparse.Namespace, settings: Settings) -> None:
    """search rank x regParam x maxIter on a validation share of the train rows; every trial
    goes to movielens.model_trials

    Example: reelhouse tune --objective ranking --ranks 32,64 --alphas 1,5
    """
    from pipelines import session, tune

    grid = tune_grid(args)
    grid.trials()  # a bad value fails here, before Spark starts
    tune.tune(session.create_spark(settings), settings, grid)


def recommend_command(args: argparse.Namespace, settings: Settings) -> None:
    """print a user's top N, or fold a new user's ratings in against the latest movie factors

    Example: reelhouse recommend --ratings my_ratings.csv --top-n 20
    """
    from pipelines import recommend

    if args.ratings:
        items = recommend.fold_in(settings, recommend.read_ratings_file(args.ratings),
                                  10 if args.top_n is None else args.top_n)
    else:
        items = recommend.for_user(settings, args.user, args.top_n)
    if args.format == "text":
        print(recommend.format_listing(items))
    else:
        write_records(["rank", "movie_id", "title", "year", "genres", "score", "source",
                       "because"], items, args.format)


def evaluate_command(args: argparse.Namespace, settings: Settings) -> None:
    """build the report tables: ALS against baselines (RMSE, MAE), ranking metrics against
    popularity, error breakdowns, metric history

    Example: reelhouse evaluate --var ranking_ks=5,10,20
    """
    from pipelines import evaluate, rendering, session

    cli_vars = rendering.parse_vars(args.var)
    evaluate.evaluate(session.create_spark(settings), settings, cli_vars, force=args.force)


def report_command(args: argparse.Namespace, settings: Settings) -> None:
    """print a short summary and write one self-contained HTML report with charts"""
    from pipelines import report, session

    report.write_report(session.create_spark(settings), settings,
                        Path(args.out) if args.out else None)


# --- the models `train` fits, and the trials `tune` runs ------------------------------------

TRAIN_OPTIONS = ("rank", "max_iter", "reg_param", "nonnegative", "seed", "top_n",
                 "min_movie_ratings", "user_bias_damping", "movie_bias_damping", "bias_centred")
LIST_OPTIONS = {"list_rank": "rank", "list_max_iter": "max_iter", "list_reg_param": "reg_param",
                "alpha": "alpha", "confidence": "confidence",
                "confidence_threshold": "confidence_threshold"}


def train_params(args: argparse.Namespace, best: dict | None = None):
    """TrainParams from the defaults, then the best trial if asked, then the flags typed."""
    from pipelines.als import TrainParams

    values = dict(best or {})
    values.update({k: getattr(args, k) for k in TRAIN_OPTIONS if getattr(args, k) is not None})
    return TrainParams(**values).validated()


def typed_models(args: argparse.Namespace):
    """`train` without --params best: the rating model and the list model from the defaults
    and the flags typed, and why that list model serves."""
    from pipelines import train

    params = train_params(args)
    lists_typed = args.list_model == "explicit" or any(
        getattr(args, flag) is not None for flag in LIST_OPTIONS)
    return (params, list_params(args, params),
            "set on the command line" if lists_typed else train.DEFAULT_LIST_CHOICE)


def best_models(spark, settings, args: argparse.Namespace):
    """`train --params best`: the rating model of the latest RMSE tune and the list model of
    the latest ranking tune, where there is one (each default otherwise; flags typed win)."""
    from pipelines import train, tune

    try:
        params = train_params(args, tune.best_params(spark, settings))
    except ReelhouseError:
        params = None
    chosen = tune.best_list_params(spark, settings)
    if params is None and chosen is None:
        raise ReelhouseError("There are no tuning trials yet: run `reelhouse tune` (rating "
                             "model) or `reelhouse tune --objective ranking` (list model) "
                             "before `reelhouse train --params best`.")
    params = params or train_params(args)
    if chosen is None:
        return params, list_params(args, params), train.DEFAULT_LIST_CHOICE
    best, why = chosen
    if not best.implicit:  # the rating model ranked best: it serves the lists too
        return params, params, why
    return params, list_params(args, params, best), why


def list_params(args: argparse.Namespace, params, base=None):
    """The list model: the rating model's params (--list-model explicit), or `base` (the
    defaults unless given) with the run's shared settings and the --list-* flags typed."""
    from pipelines import als

    if args.list_model == "explicit":
        return params
    typed = {field: getattr(args, flag) for flag, field in LIST_OPTIONS.items()
             if getattr(args, flag) is not None}
    return als.list_model_params(params, base or als.LIST_DEFAULTS, **typed)


def tune_grid(args: argparse.Namespace):
    """The trials `tune` runs; ranks and regParams not given default by objective."""
    from pipelines import tune

    ranking = args.objective == "ranking"
    return tune.TuneGrid(ranks=args.ranks or ((32, 64, 96) if ranking else (10, 20, 30, 50)),
                          reg_params=args.reg_params or ((0.1, 0.3, 1.0) if ranking
                                                         else (0.05, 0.1, 0.15, 0.2)),
                          max_iters=args.max_iters, bias_centred=args.bias_centred,
                          validation_fraction=args.validation_fraction, seed=args.seed,
                          parallelism=args.parallelism, objective=args.objective,
                          alphas=args.alphas)


# --- output --------------------------------------------------------------------------------

def _json_value(value):
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    if hasattr(value, "asDict"):
        return {k: _json_value(v) for k, v in value.asDict().items()}
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    return value


def print_rows(df, fmt: str) -> None:
    """Query results on stdout (logs go to stderr, so stdout can be piped)."""
    if fmt == "table":
        df.show(n=1000, truncate=False)
        return
    # the user asked for every row of their query
    write_records(df.columns, [row.asDict() for row in df.collect()], fmt)


def write_records(columns: list[str], records: list[dict], fmt: str) -> None:
    """Records (one dict each) on stdout as JSON (a list of objects) or CSV (lists and
    objects as JSON in their cell)."""
    if fmt == "json":
        json.dump([{k: _json_value(v) for k, v in record.items()} for record in records],
                  sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
        return
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(columns)
    for record in records:
        values = [record.get(column) for column in columns]
        writer.writerow([json.dumps(_json_value(v)) if isinstance(v, list | dict)
                         else _json_value(v) for v in values])


# --- the entry point -----------------------------------------------------------------------

def dispatch(args: argparse.Namespace) -> int:
    """The command's handler, given the settings its flags make; its exit code."""
    code = args.func(args, settings_from(args))
    return 0 if code is None else code


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["spark-sql"]:  # everything we do not know is spark-sql's (-e, -f, ...)
        args, rest = parser.parse_known_args(argv)
        args.spark_sql_args = rest
    else:
        args = parser.parse_args(argv)
    try:
        return dispatch(args)
    except ReelhouseError as exc:
        print(f"reelhouse: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:
        if not type(exc).__module__.startswith(("pyspark", "py4j")):
            raise  # a bug in reelhouse: the stack trace is for us
        message = spark_message(exc)
        if "AccessDeniedException" in message:  # S3A (or another store) refused the keys
            message += (" -- check the credentials (AWS_ACCESS_KEY_ID and "
                        "AWS_SECRET_ACCESS_KEY, a profile, or fs.s3a.* settings) and the "
                        "bucket's permissions")
        print(f"reelhouse: error: Spark failed: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("reelhouse: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
