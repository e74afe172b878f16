"""``python -m nursery_io``: what the runtime found on this machine, and a live demo."""

import sys

from ._showcase import main

if __name__ == "__main__":
    sys.exit(main())
