"""Real agent frameworks driven against the fake provider, priced by the pipeline.

Each framework has its own folder (``tests/frameworks/<set>/``, with its pinned
``requirements.txt``) and its own venv, built and run by ``run.sh``, which sets
``OTEL_COSTS_FRAMEWORK_SET`` to the set it runs; a run without it (the main suite, whose venv has
no framework) collects none of these folders.
"""

from __future__ import annotations

import os
from pathlib import Path

_HERE = Path(__file__).parent
_SET = os.environ.get("OTEL_COSTS_FRAMEWORK_SET")

# Every folder but the set's own: its tests import a framework that only its venv has.
collect_ignore = [
    entry.name
    for entry in _HERE.iterdir()
    if entry.is_dir() and not entry.name.startswith((".", "_")) and entry.name.replace("_", "-") != _SET
]
