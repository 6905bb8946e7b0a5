"""`python -m sprout_harness` is the `sprout` command."""

import sys

try:
    from sprout_harness.cli import main
except KeyboardInterrupt:  # Ctrl+C while the command is still loading: nothing to tear down yet
    sys.stderr.write("error: interrupted\n")
    sys.exit(130)  # the command's code for "interrupted", not Python's death by SIGINT

main()
