"""``python -m simulator --help``."""

import sys

from simulator._cli import main

if __name__ == "__main__":
    sys.exit(main())
