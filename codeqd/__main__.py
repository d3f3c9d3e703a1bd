import sys

from codeqd.cli import main

sys.exit(main())
