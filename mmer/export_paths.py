"""Where `mmer analyze` writes per-clip files (-f eaf, -f vtt): one file per analysed clip."""

from __future__ import annotations

from pathlib import Path

from mmer.results import ClipResult
from mmer.errors import UserError


def export_paths(output: Path | None, results: list[ClipResult], inputs: int, suffix: str) -> list[tuple[ClipResult, Path | None]]:
    """Each analysed clip with the path of its file (`suffix` such as ".vtt").

    inputs: how many inputs (media files, failed ones included) were analysed; it decides, so that a
    failed input never changes where the others go:
    - one input: OUTPUT itself, or OUTPUT/<clip name><suffix> when OUTPUT is an existing folder or
      ends with '/'; None (standard output) without OUTPUT.
    - several: OUTPUT is an existing folder holding <clip name><suffix> per clip
      (<clip name>_2<suffix>, ... when two clips share a name). Raises UserError without OUTPUT,
      when OUTPUT is a file, or when the folder (or a single file's folder) does not exist: mmer
      creates no folders.
    """
    folder_given = output is not None and (output.is_dir() or str(output).endswith(("/", "\\")))
    if inputs <= 1 and not folder_given:
        if output is not None and not output.parent.is_dir():
            raise UserError(f"--output {output}: folder {output.parent} does not exist (create it first)")
        return [(r, output) for r in results]
    if output is None:
        raise UserError(f"{inputs} inputs give one {suffix} file each: pass --output FOLDER")
    if output.exists() and not output.is_dir():
        raise UserError(f"--output {output}: with several inputs it must name a folder, but it is a file")
    if not output.is_dir():
        raise UserError(f"--output {output}: folder does not exist (create it first)")
    pairs, used = [], set()
    for r in results:
        stem, n = Path(r.file).stem, 1
        candidate = output / f"{stem}{suffix}"
        while candidate in used:
            n += 1
            candidate = output / f"{stem}_{n}{suffix}"
        used.add(candidate)
        pairs.append((r, candidate))
    return pairs
