"""What every command shares: log format, and turning a library error into one line and an exit code."""
from __future__ import annotations

import logging
import os
import sys

from ..errors import CardiacDreamerError

EXIT_BAD_INPUT = 2


def configure_logging() -> None:
    """Library messages at INFO on rank 0 (warnings only on the other ranks), short and timestamped."""
    level = logging.INFO if int(os.environ.get("RANK", "0")) == 0 else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")


def report_error(error: CardiacDreamerError) -> int:
    """One line on stderr, no traceback."""
    message = " ".join(str(error).split())
    print(f"error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT
