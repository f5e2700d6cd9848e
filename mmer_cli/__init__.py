"""`mmer.cli`: the Typer app (`app.py`) and its commands (`commands/`).

Commands parse options, call one library function and render its typed result; no library code
imports this package (docs/architecture.md).
"""
