"""``python -m zipfhead.cli``: the ``zipfhead`` command."""

import sys

from zipfhead.cli.main import main

sys.exit(main())
