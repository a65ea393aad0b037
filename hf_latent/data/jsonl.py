"""Line-numbered JSONL reading with errors that say which line of which file is wrong."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator, Sequence
from pathlib import Path


class DataFormatError(ValueError):
    """A data file has a malformed line or lacks a required field."""


def read_jsonl(path: str | Path, required: Sequence[str] = ()) -> Iterator[tuple[int, dict]]:
    """Yield `(line_number, row)` for every non-empty line of a `.jsonl` or `.jsonl.gz` file.

    Args:
        path: the file.
        required: fields every row must have.

    Raises:
        DataFormatError: on a line that is not a JSON object or lacks a required field (names file and line).
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataFormatError(f"{path}:{line_number}: malformed JSON ({error.msg}).") from error
            if not isinstance(row, dict):
                raise DataFormatError(f"{path}:{line_number}: expected a JSON object, got {type(row).__name__}.")
            missing = [field for field in required if field not in row]
            if missing:
                raise DataFormatError(f"{path}:{line_number}: missing field(s) {missing}.")
            yield line_number, row
