"""What every command shares: the parser (``--version``, both flag spellings, one-line errors), the log format,
and turning a library error into one line and an exit code."""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from typing import Callable, Iterator, NoReturn, Optional, Union

from ..errors import CardiacDreamerError
from ..io.fileio import os_reason, text_problem
from ..version import __version__

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # the shell's code for a process stopped by Ctrl-C
_TERMINATED: list = []  # the SIGTERM received, if any
RESEND_AFTER_S = 0.01  # a stop signal swallowed by a finalizer is sent again after this


class CommandParser(argparse.ArgumentParser):
    """A command's parser: ``--version``, and a mistake on the command line as one ``error: ...`` line, exit 2, the
    way a library error is reported (argparse's usage block buries the message)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_argument("--version", action="version", version=f"%(prog)s {__version__}")

    def error(self, message: str) -> NoReturn:
        if message.endswith(": expected one argument"):  # argparse reads a value such as -1mm,2deg as a flag
            flag = message[len("argument "):-len(": expected one argument")].split("/")[0]
            message += f"; a value that begins with '-' is written {flag}=VALUE"
        self.exit(EXIT_BAD_INPUT, f"error: {message} (see {self.prog} --help)\n")


class StoreOnce(argparse.Action):
    """A flag given at most once: a second ``--config`` silently replaced the first."""

    def __call__(self, parser, namespace, values, option_string=None):
        if getattr(namespace, self.dest, None) is not None:
            parser.error(f"{option_string} is given twice: give it once")
        setattr(namespace, self.dest, values)


def add_flag(container: Union[argparse.ArgumentParser, argparse._ArgumentGroup], flag: str, **kwargs) -> None:
    """``--data_dir`` that also answers to ``--data-dir``: the guide writes underscores, most tools hyphens."""
    names = [flag] + ([flag.replace("_", "-")] if "_" in flag else [])
    container.add_argument(*names, dest=flag.lstrip("-"), **kwargs)


def a_path(text: str) -> str:
    """A path flag's value; an empty one (an unset shell variable) is refused, not read as the current folder or as
    the flag's default, and so is one :func:`~cardiac_dreamer.io.fileio.text_problem` finds unfit (a name that is not
    UTF-8 failed only in TensorBoard, with the run half written)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("needs a path, got an empty one (an unset shell variable?)")
    problem = text_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(f"got a path that {problem}: {ascii(text)}")
    return text


def configure_logging() -> None:
    """Library messages at INFO on rank 0 (warnings only on the other ranks), short and timestamped."""
    level = logging.INFO if int(os.environ.get("RANK", "0")) == 0 else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    logging.captureWarnings(True)  # library warnings (PIL on odd image metadata) as one log line each


def report_error(error: CardiacDreamerError) -> int:
    """One line on stderr, no traceback."""
    print(f"error: {one_line(str(error))}", file=sys.stderr)
    return EXIT_BAD_INPUT


def run_script(main: Callable[[], Optional[int]]) -> int:
    """A benchmark script's exit code: ``main()``'s, or a missing or unreadable file (the library's errors and the
    operating system's) as one line and :data:`EXIT_BAD_INPUT`, as the commands report them, not a traceback."""
    try:
        return main() or 0
    except CardiacDreamerError as error:
        return report_error(error)
    except OSError as error:
        print(f"error: {error.filename or 'a file'}: {os_reason(error)}", file=sys.stderr)
        return EXIT_BAD_INPUT


def one_line(message: str) -> str:
    """``message`` on one line. An error re-raised by a data-loader worker carries the worker's traceback, which
    ends with the original ``module.Error: message`` line: keep that message alone."""
    if "Original Traceback" in message:
        last = message.strip().splitlines()[-1]
        message = last.split(": ", 1)[1] if ": " in last else last
    return " ".join(message.split())


@contextlib.contextmanager
def sigterm_as_ctrl_c() -> Iterator[None]:
    """Within: SIGTERM (``kill``, a job scheduler's stop before its SIGKILL) ends the command as Ctrl-C does, so the
    run is left resumable, its lock released and the resume command printed, instead of dying mid-write in silence.
    The previous handler comes back on exit (a notebook or test calling ``main`` keeps its own)."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return

    def interrupt(signum, frame):
        _TERMINATED.append(signum)
        raise KeyboardInterrupt

    def raise_swallowed_again(unraisable) -> None:
        # A signal that lands in a finalizer (a garbage-collection callback, e.g. matplotlib's) raises there, where
        # Python can only print it and carry on: the run would finish as if never stopped. Send it again a moment
        # later, from another thread, so that it is raised outside the finalizer (and again if it lands in another).
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            again = signal.SIGTERM if _TERMINATED else signal.SIGINT
            threading.Timer(RESEND_AFTER_S, os.kill, (os.getpid(), again)).start()
        else:
            previous_hook(unraisable)

    _TERMINATED.clear()  # a notebook calling main again starts with no signal received
    previous, previous_hook = signal.signal(signal.SIGTERM, interrupt), sys.unraisablehook
    sys.unraisablehook = raise_swallowed_again
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        sys.unraisablehook = previous_hook


def interrupted_exit_code() -> int:
    """143 after SIGTERM, 130 after Ctrl-C: the codes a shell gives a process each signal stops."""
    return 128 + int(signal.SIGTERM) if _TERMINATED else EXIT_INTERRUPTED
