import sys

from numbershop.cli import main

sys.exit(main())
