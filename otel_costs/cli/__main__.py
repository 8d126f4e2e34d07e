"""``python -m otel_costs.cli``: the ``otel-costs`` command without its console script."""

import sys

from otel_costs.cli._main import main

sys.exit(main())
