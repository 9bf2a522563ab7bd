"""``python -m amigate.cli``: the same as the ``amigate`` command."""

from __future__ import annotations

import sys

from amigate.cli import main

sys.exit(main())
