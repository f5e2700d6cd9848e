"""`python -m mmer` / `torchrun -m mmer`: the `mmer` command."""

from mmer.cli.app import main

main()
