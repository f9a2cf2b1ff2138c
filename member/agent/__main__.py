"""python -m member.agent: the node agent (the member chart's DaemonSet runs `balancing agent`)."""

import sys

from balancing.cli import main

sys.exit(main(["agent"]))
