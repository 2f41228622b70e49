import sys

from tools.gateway.cli import main

sys.exit(main())
