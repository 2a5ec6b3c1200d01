"""The one exception type a user is meant to see: its message is one sentence saying what to do."""


class ReelhouseError(Exception):
    """An error the user can act on; the CLI prints its message without a stack trace."""

    exit_code = 1


def spark_message(exc: BaseException) -> str:
    """The line of a Spark/Py4J error that says what went wrong (its [ERROR_CLASS] line),
    not Py4J's "An error occurred while calling o62.sql." nor the stack trace."""
    lines = [line.strip(" :") for line in str(exc).strip().splitlines() if line.strip(" :")]
    for line in lines:
        if "[" in line and "]" in line and not line.startswith("at "):
            return line[:300]
    useful = [line for line in lines if not line.startswith(("An error occurred", "at "))]
    return (useful or lines or [type(exc).__name__])[0][:300]
