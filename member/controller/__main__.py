"""python -m member.controller: the member controller (the member chart's Deployment runs `balancing controller`)."""

import sys

from balancing.cli import main

sys.exit(main(["controller"]))
