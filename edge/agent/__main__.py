"""``python -m edge.agent run --config FILE``."""

import sys

from edge.agent.cli import main

sys.exit(main())
