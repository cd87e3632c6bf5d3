"""``python -m remadom.cli.train --config CONFIG [--set KEY=VALUE ...] [--resume auto|PATH]``.

Same as ``remadom train``; see ``--help`` and docs/cli.md.
"""

import sys

from .main import main


def run(argv: list[str] | None = None) -> int:
    """Run ``remadom train`` with ``argv`` (default ``sys.argv[1:]``)."""
    return main(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(run())
