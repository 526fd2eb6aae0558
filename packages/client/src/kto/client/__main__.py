"""``python -m kto.client classify FILE...`` (the same as the ``cats-dogs-other`` command)."""

import sys

from kto.client.cli import main

sys.exit(main())
