"""Reading catalogue files into items for ``upsert``."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["read_jsonl", "read_csv"]


def _resolve_images(row: dict[str, Any], base: Path) -> dict[str, Any]:
    # As `mmsearch ingest` does: photo paths are relative to the catalogue file, and the paths
    # as written become the item's image URIs unless the line gives them.
    images = row.get("images")
    if isinstance(images, str):
        images = [images]
    if images:
        if "image_uris" not in row:
            row["image_uris"] = list(images)
        row["images"] = [str(base / p) for p in images]
    return row


def read_jsonl(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """The items of a catalogue in ``mmsearch ingest``'s format: one JSON object per line,
    with the fields of an ``Item`` (``vectors`` as ``{"space": [...]}``); blank lines are
    skipped. Photo paths are resolved against the file's folder. Raises ValueError naming the
    line for a line that is not a JSON object."""
    base = Path(path).parent
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: invalid JSON: {e}") from e
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{n}: not a JSON object")
            yield _resolve_images(row, base)


def read_csv(path: str | os.PathLike[str], *, list_separator: str = "|") -> Iterator[dict[str, Any]]:
    """The items of a CSV file with a header row: columns named after ``Item`` fields (``id``,
    ``title``, ``description``, ``category``, ``price``, ``images``, ``image_uris``, ...),
    plus ``attributes.<name>`` columns for attributes and ``vectors.<space>`` columns holding a
    vector's values separated by commas or spaces. ``images`` and ``image_uris`` cells hold
    ``list_separator``-separated paths, relative to the file's folder; empty cells are
    absent."""
    base = Path(path).parent
    with open(path, encoding="utf-8", newline="") as f:
        for raw in csv.DictReader(f):
            row: dict[str, Any] = {k: v for k, v in raw.items() if k is not None and v not in (None, "")}
            for key in ("images", "image_uris"):
                if key in row:
                    row[key] = [p.strip() for p in row[key].split(list_separator) if p.strip()]
            for key in [k for k in row if k.startswith("vectors.")]:
                row[key] = [float(x) for x in row[key].replace(",", " ").split()]
            yield _resolve_images(row, base)
