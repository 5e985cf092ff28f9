"""Parquet output: deterministic bytes, written atomically."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def write_parquet(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` so that equal tables always give byte-identical files.

    Nothing time- or host-dependent goes into the file (pyarrow records only its version), and
    the file is written next to its destination and renamed, so a reader never sees half a file.
    """
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp, compression="zstd", use_dictionary=True, write_statistics=True)
    os.replace(tmp, path)
