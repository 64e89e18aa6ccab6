"""Errors that end a command with one line and exit status 2: the user's input, or a data file,
is wrong. Anything else is a bug and keeps its traceback."""


class UsageError(Exception):
    """Bad input: the message is the one line the user reads."""


class DataError(UsageError):
    """A data file is unreadable or breaks its schema; the message names the file and the line."""


def error_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (at most 300 characters): an error in one line."""
    text = str(exc).strip()
    return (f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__)[:300]
