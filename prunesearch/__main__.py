import sys

from prunesearch.cli import main

sys.exit(main())
