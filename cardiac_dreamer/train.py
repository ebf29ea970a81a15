"""``python -m cardiac_dreamer.train``: the same entry point as ``cardiac-train`` (what torchrun launches)."""
import sys

from .cli.train_command import main

if __name__ == "__main__":
    sys.exit(main())
