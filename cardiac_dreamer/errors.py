"""Typed exceptions: the library raises them, the command line turns each into one line and an exit code."""


class CardiacDreamerError(Exception):
    """Base class; ``str(error)`` is a complete one-line message for a user."""


class DataError(CardiacDreamerError, ValueError):
    """A data directory, transitions file, image, move or patient list is unusable. Also a ``ValueError``, so code
    that caught the ``ValueError`` a bad move once raised still catches it."""


class ConfigError(CardiacDreamerError, ValueError):
    """A configuration file, key or value is invalid (also a ``ValueError``: a bad argument, as Python has it)."""


class CheckpointError(CardiacDreamerError):
    """A checkpoint is missing, unreadable, foreign or incompatible."""


class OutputError(CardiacDreamerError):
    """An output file or directory cannot be written (full disk, no permission, inside the data directory)."""


class Interrupted(CardiacDreamerError):
    """The user stopped a run (Ctrl-C); the message says how to continue it, or that there is nothing to resume."""


def error_text(error: BaseException, limit: int = 200, named: bool = False) -> str:
    """Another library's exception as words inside one of our one-line messages: its message on one line (torch's
    state-dict errors span many), cut to ``limit`` characters; ``named`` puts its type first (``KeyError: 'x'``)."""
    text = " ".join(str(error).split())
    if named or not text:
        text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
