"""`python -m simulate` is the `simulate` command."""

from simulate.cli import main

main()
