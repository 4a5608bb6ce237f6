"""``python -m crewtrain_nb``: the same as the ``crewtrain-nb`` command."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
