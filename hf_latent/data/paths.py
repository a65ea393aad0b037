"""Where the shared real data lives (`../shared/data` beside the checkout; see its README)."""

from __future__ import annotations

import os
from pathlib import Path


def shared_data_dir() -> Path:
    """The folder holding `hotpotqa/`, `ircot/` and `bright/`.

    `HF_LATENT_DATA_DIR` if set; otherwise the first `shared/data` found beside the current directory or the
    package checkout, walking up from each.

    Raises:
        FileNotFoundError: when no such folder exists, with the places that were searched.
    """
    if os.environ.get("HF_LATENT_DATA_DIR"):
        return Path(os.environ["HF_LATENT_DATA_DIR"]).expanduser()
    starts = [Path.cwd(), Path(__file__).resolve()]
    searched = []
    for start in starts:
        for folder in [start, *start.parents]:
            candidate = folder / "shared" / "data"
            searched.append(str(candidate))
            if candidate.is_dir():
                return candidate
    raise FileNotFoundError(
        "Could not find the shared data folder (shared/data). Set HF_LATENT_DATA_DIR to it. Searched: "
        + ", ".join(dict.fromkeys(searched))
    )


def require_file(path: str | os.PathLike, what: str) -> Path:
    """Return `path` as a `Path`, or raise a `FileNotFoundError` that says what the file is."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found at {path}. See shared/data/README.md for where it comes from.")
    return path
