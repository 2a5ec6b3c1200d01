"""The `reelhouse` command. Each subcommand is a verb; each maps to one function in a step module.

Exit codes: 0 success, 1 failure (a one-line message on stderr), 2 bad usage.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import decimal
import json
import sys
from pathlib import Path

from pipelines.errors import ReelhouseError
from pipelines.settings import Settings, normalise_warehouse, parse_conf


def _common(parser: argparse.ArgumentParser) -> None:
    """Options every command accepts."""
    parser.add_argument("--warehouse", help="warehouse root: a local path or any Hadoop URI "
                        "(s3a://, hdfs://, abfss://); default ./warehouse or $REELHOUSE_WAREHOUSE")
    parser.add_argument("--master", help="Spark master URL (default local[*] or "
                        "$REELHOUSE_MASTER)")
    parser.add_argument("--conf", action="append", metavar="KEY=VALUE",
                        help="extra Spark setting; may repeat")


def _with_vars(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--var", action="append", metavar="NAME=VALUE",
                        help="value for var() in the SQL models; may repeat")


def _with_select(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--select", "-s", action="append", metavar="MODEL",
                        help="models to build: m, m+ (and downstream), +m (and upstream)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reelhouse",
        description="A SQL-first movie-recommendation warehouse on Spark SQL and Delta Lake.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=text, description=text)
        _common(sub)
        return sub

    run = command("run", "ingest a dataset and build every table, end to end")
    run.add_argument("--data", help="a MovieLens folder (default: a built-in synthetic dataset)")
    _with_vars(run)
    _with_select(run)

    ingest = command("ingest", "land a MovieLens folder's files in the raw tables")
    ingest.add_argument("--data", required=True, help="a MovieLens folder")

    build = command("build", "build the SQL models (and run their data tests)")
    _with_vars(build)
    _with_select(build)

    compile_ = command("compile", "render the SQL models into target/compiled/")
    _with_vars(compile_)
    _with_select(compile_)

    sql = command("sql", "run a Spark SQL query against the warehouse")
    sql.add_argument("query", help="the SQL text")
    sql.add_argument("--format", choices=("table", "csv", "json"), default="table")

    generate = command("generate", "write a synthetic dataset in the ml-latest CSV layout")
    generate.add_argument("--out", required=True, help="folder to write")
    generate.add_argument("--ratings", type=int, required=True, help="number of ratings")
    generate.add_argument("--users", type=int)
    generate.add_argument("--movies", type=int)
    generate.add_argument("--seed", type=int, default=42)

    download = command("download", "fetch a MovieLens release from GroupLens")
    download.add_argument("name", help="ml-latest-small, ml-latest, ml-100k, ml-1m, ml-10m, "
                          "ml-20m, ml-25m or ml-32m")
    download.add_argument("--out", default="data", help="folder to extract into (default data/)")
    download.add_argument("--force", action="store_true", help="download even if present")

    serve = command("serve", "serve the warehouse over JDBC/ODBC (Spark Thrift Server)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    serve.add_argument("--port", type=int, default=10000)
    serve.add_argument("--refresh-seconds", type=float, default=2.0,
                       help="how often to pick up tables a pipeline run created or dropped")
    serve.add_argument("--no-auth", action="store_true",
                       help="allow a non-loopback address without authentication (unsafe)")

    command("spark-sql", "Spark's spark-sql shell over the warehouse; other arguments (-e, -f, "
                         "...) go to spark-sql")

    command("setup", "fetch and cache Delta Lake's jars, check Java (run once; later starts are "
                     "offline)")
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    overrides = {}
    if args.warehouse:
        overrides["warehouse"] = normalise_warehouse(args.warehouse)
    if args.master:
        overrides["master"] = args.master
    overrides["spark_conf"] = parse_conf(args.conf)
    return Settings(**overrides)


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
    rows = df.collect()  # the user asked for every row of their query
    if fmt == "json":
        json.dump([{k: _json_value(v) for k, v in row.asDict().items()} for row in rows],
                  sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(df.columns)
        for row in rows:
            writer.writerow([json.dumps(_json_value(v)) if isinstance(v, list | dict)
                             else _json_value(v) for v in row])


def dispatch(args: argparse.Namespace) -> int:
    from pipelines import progress

    settings = settings_from(args)
    if args.command == "generate":
        from pipelines.generate import generate_dataset

        meta = generate_dataset(Path(args.out), args.ratings, args.users, args.movies, args.seed,
                                progress=lambda d, t: progress.bar(d, t, "generate"))
        progress.say(f"wrote {meta['num_ratings']:,} ratings by {meta['num_users']:,} users on "
                     f"{meta['num_movies']:,} movies to {args.out}")
        return 0
    if args.command == "download":
        from pipelines.download import download_dataset

        # base_url None: $REELHOUSE_MOVIELENS_URL (a mirror) or GroupLens.
        folder = download_dataset(args.name, Path(args.out), base_url=None, force=args.force,
                                  progress=lambda d, t: progress.bar(d, t, args.name))
        progress.say(f"{args.name} is in {folder}; load it with: reelhouse run --data {folder}")
        return 0
    if args.command == "spark-sql":
        from pipelines import serve

        return serve.spark_sql(settings, args.spark_sql_args)
    if args.command == "serve":
        from pipelines import serve

        return serve.serve(settings, args.host, args.port, args.refresh_seconds, args.no_auth)
    if args.command == "setup":
        from pipelines import jvm

        version = jvm.check_java()
        jars = jvm.ensure_delta_jars(settings.jars_dir)
        progress.say(f"Java {version} ok; Delta jars cached: {', '.join(j.name for j in jars)}")
        return 0

    from pipelines import runner

    cli_vars = runner.parse_vars(getattr(args, "var", None))
    if args.command == "compile":
        project = runner.load_project(settings, cli_vars=cli_vars)
        for path in runner.compile_project(project, args.select):
            print(path)
        return 0

    from pipelines.session import create_spark

    if args.command == "run":
        from pipelines import pipeline

        project_dir = Path.cwd()
        data_dir = Path(args.data) if args.data else pipeline.default_dataset(project_dir)
        spark = create_spark(settings)
        pipeline.run_pipeline(spark, settings, data_dir, cli_vars, args.select)
        progress.say(f"warehouse ready at {settings.warehouse}")
        return 0
    spark = create_spark(settings)
    if args.command == "ingest":
        from pipelines import ingest

        ingest.ingest_dataset(spark, settings, Path(args.data))
        return 0
    if args.command == "build":
        project = runner.load_project(settings, cli_vars=cli_vars)
        runner.build(spark, project, args.select)
        return 0
    if args.command == "sql":
        try:
            print_rows(spark.sql(args.query), args.format)
        except Exception as exc:  # Spark's message, first line only: it names the problem
            text = str(exc).strip()
            raise ReelhouseError(f"The query failed: {text.splitlines()[0] if text else exc}") \
                from exc
        return 0
    raise ReelhouseError(f"Unknown command {args.command}.")


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
    except KeyboardInterrupt:
        print("reelhouse: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

