"""`python -m moss` runs the `moss` command."""

from moss.cli import main

main()
