"""``python -m tmem.bench``: the same as the ``tmemd-bench`` command."""

from __future__ import annotations

import sys

from . import main

sys.exit(main())
