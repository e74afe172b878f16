"""``python -m nursery_io``: the capability report and demo, or ``run`` a program (see _cli)."""

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
