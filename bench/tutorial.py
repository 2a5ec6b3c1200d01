"""The classic Spark MovieLens tutorial, as the baseline the bench compares against.

    .venv/bin/python -m bench.tutorial DATA_DIR [--result FILE]

It does only what the notebooks do, with every Spark default left alone (200 shuffle
partitions, ALS rank 10, maxIter 10, regParam 0.1, 10 user and 10 item blocks): load
ratings.csv with a schema and cache it (so the fit is timed apart from the read), split
80/20, fit ALS, RMSE on the test rows (cold-start rows dropped), and top-10
recommendations for all users, computed in full and thrown away (Spark's `noop` sink) so
nothing is skipped. Delta is not loaded: the tutorial does not use it. It prints one JSON
line with its timings (and writes it to --result).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

PROCESS_STARTED = time.monotonic()  # before pyspark is imported: JVM start is counted

from pyspark.ml.evaluation import RegressionEvaluator  # noqa: E402
from pyspark.ml.recommendation import ALS  # noqa: E402
from pyspark.sql import SparkSession  # noqa: E402

SEED = 42


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.tutorial")
    parser.add_argument("data", help="a folder with an ml-latest style ratings.csv")
    parser.add_argument("--result", help="also write the JSON result to this file")
    parser.add_argument("--driver-memory", default="4g")
    args = parser.parse_args(argv)

    spark = (SparkSession.builder.appName("tutorial-style-als")
             .master("local[*]")
             .config("spark.driver.memory", args.driver_memory)
             .config("spark.ui.enabled", "false")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    seconds = {"spark_start": time.monotonic() - PROCESS_STARTED}

    # The CSV is read and cached apart from the fit, so "fit" times ALS alone, as our own fit
    # time (which starts from cached rows) does; many notebooks cache here too.
    clock = time.monotonic()
    ratings = spark.read.csv(f"{args.data}/ratings.csv", header=True,
                             schema="userId int, movieId int, rating float, timestamp long")
    ratings = ratings.cache()
    ratings.count()
    seconds["load"] = time.monotonic() - clock

    clock = time.monotonic()
    train, test = ratings.randomSplit([0.8, 0.2], seed=SEED)

    als = ALS(userCol="userId", itemCol="movieId", ratingCol="rating",
              coldStartStrategy="drop", seed=SEED)
    model = als.fit(train)
    seconds["fit"] = time.monotonic() - clock

    clock = time.monotonic()
    predictions = model.transform(test)
    rmse = RegressionEvaluator(metricName="rmse", labelCol="rating",
                               predictionCol="prediction").evaluate(predictions)
    seconds["evaluate"] = time.monotonic() - clock

    clock = time.monotonic()
    model.recommendForAllUsers(10).write.format("noop").mode("overwrite").save()
    seconds["recommend"] = time.monotonic() - clock

    spark.stop()
    seconds["total"] = time.monotonic() - PROCESS_STARTED
    result = {"rmse": rmse, "seconds": {k: round(v, 2) for k, v in seconds.items()},
              "settings": {"rank": als.getRank(), "maxIter": als.getMaxIter(),
                           "regParam": als.getRegParam(), "numUserBlocks": als.getNumUserBlocks(),
                           "numItemBlocks": als.getNumItemBlocks(),
                           "spark.sql.shuffle.partitions": 200}}
    line = json.dumps(result)
    print(line)
    if args.result:
        with open(args.result, "w") as out:
            out.write(line + "\n")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
