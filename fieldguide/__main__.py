"""`python -m fieldguide ...` (and `torchrun ... -m fieldguide train ...`): the CLI."""

import sys

from fieldguide.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
