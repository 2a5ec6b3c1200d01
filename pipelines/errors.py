"""The one exception type a user is meant to see: its message is one sentence saying what to do."""


class ReelhouseError(Exception):
    """An error the user can act on; the CLI prints its message without a stack trace."""

    exit_code = 1
