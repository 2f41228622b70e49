"""`python -m host_sim ...`: see host_sim/cli.py and docs/simulator.md."""

import sys

from host_sim.cli import main

sys.exit(main())
