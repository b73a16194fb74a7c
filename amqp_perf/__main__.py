"""``python -m amqp_perf`` is the same as ``amqp-perf``."""

import sys

from amqp_perf.cli import main

if __name__ == "__main__":
    sys.exit(main())
