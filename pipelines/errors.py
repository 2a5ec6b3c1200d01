"""The one exception type a user is meant to see: its message is one sentence saying what to do."""


class ReelhouseError(Exception):
    """An error the user can act on; the CLI prints its message without a stack trace."""

    exit_code = 1


def spark_message(exc: BaseException, limit: int = 300) -> str:
    """The line of an error that says what went wrong: a Spark/Py4J error's [ERROR_CLASS]
    line, not Py4J's "An error occurred while calling o62.sql." nor the stack trace; any other
    error's first line (its type's name when it has no message). At most `limit` characters."""
    lines = [line.strip(" :") for line in str(exc).strip().splitlines() if line.strip(" :")]
    for line in lines:
        if "[" in line and "]" in line and not line.startswith("at "):
            return line[:limit]
    useful = [line for line in lines if not line.startswith(("An error occurred", "at "))]
    return (useful or lines or [type(exc).__name__])[0][:limit]
