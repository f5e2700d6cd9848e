"""`python -m mmer_cli` / `torchrun -m mmer_cli`.

`-m` puts the working directory first on sys.path, so a user's own `models/` or `extractors/`
folder there would shadow ours: put the folder holding our packages ahead of it first.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmer_cli.cli import main  # noqa: E402

main()
