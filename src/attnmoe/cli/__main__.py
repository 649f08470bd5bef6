"""``python -m attnmoe.cli``: the same as the ``attnmoe`` command."""

import sys

from . import main

sys.exit(main())
