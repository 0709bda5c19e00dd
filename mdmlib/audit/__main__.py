"""`python -m mdmlib.audit ...`: the audit's command line (`mdmlib.audit.cli`)."""
import sys

from mdmlib.audit.cli import main

sys.exit(main())
