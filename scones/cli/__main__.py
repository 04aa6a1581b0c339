import sys

from scones.cli import main

sys.exit(main())
