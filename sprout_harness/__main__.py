"""`python -m sprout_harness` is the `sprout` command."""

from sprout_harness.cli import main

main()
