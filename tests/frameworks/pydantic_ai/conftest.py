"""The Pydantic AI set: puts the shared ``cost_checks`` helpers (one folder up) on ``sys.path``."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
