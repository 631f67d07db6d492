import sys

from nsync_dagster.cli import main

sys.exit(main())
