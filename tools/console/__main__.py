import sys

from tools.console.cli import main

sys.exit(main())
