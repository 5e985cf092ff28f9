"""Own virtual environment for the Feast side of the benchmark.

Feast must never become a dependency of crmfs (it pins pandas<3 while crmfs pins pandas 3, and it
drags in a web server, dask, ibis...). So it lives in a venv of its own, created here with the
standard library only, and ``bench/feast_bench.py`` runs inside it as a subprocess that prints its
figures as one JSON list on stdout.

Usage from the project venv::

    from bench.feast_env import ensure_feast_venv, run_feast_bench

    ensure_feast_venv()  # idempotent; raises FeastUnavailableError without network
    figures = run_feast_bench(Path("bench/.work/scenario"), Path("bench/.work/feast"))

or ``python bench/feast_env.py SCENARIO_DIR WORK_DIR`` to print the figures.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_VENV = BENCH_DIR / ".feast-venv"

# The pinned spec is the whole identity of the venv: the marker stores it, and a different spec
# (say, after bumping Feast) makes ensure_feast_venv rebuild rather than reuse a stale install.
# The duckdb extra brings ibis-framework[duckdb], which Feast's DuckDB offline store needs; the
# file offline store (dask) and the SQLite online store come with the base package; the redis
# extra brings the client its Redis online store needs.
FEAST_SPEC = "feast[duckdb,redis]==0.67.0"
MARKER_NAME = ".crmfs-feast-spec"

# Installing Feast resolves and downloads ~100 wheels; a generous bound still stops a hung pip.
INSTALL_TIMEOUT_S = 1800
# The Feast run itself is planned for ~6 minutes on 2 cores; this bound only catches hangs.
RUN_TIMEOUT_S = 1500


class FeastUnavailableError(RuntimeError):
    """The Feast venv could not be created or the Feast run failed; figures are unavailable."""


def _venv_python(path: Path) -> Path:
    return path / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_feast_venv(path: Path = DEFAULT_VENV) -> Path:
    """Create (once) the venv at ``path`` with Feast installed; return its python executable.

    Idempotent: a marker file holding the pinned spec is written only after a successful install,
    so an interrupted or failed install is redone from scratch on the next call.
    """
    path = path.resolve()
    python = _venv_python(path)
    marker = path / MARKER_NAME
    if python.exists() and marker.exists() and marker.read_text().strip() == FEAST_SPEC:
        return python

    if path.exists():
        # A half-built venv (or one with another Feast) is cheaper to rebuild than to repair.
        shutil.rmtree(path)
    print(f"[feast_env] creating {path} with {FEAST_SPEC}", file=sys.stderr)
    venv.EnvBuilder(with_pip=True, clear=True).create(path)

    cmd = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    cmd.append(FEAST_SPEC)
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        shutil.rmtree(path, ignore_errors=True)
        raise FeastUnavailableError(
            f"pip install {FEAST_SPEC} did not finish within {INSTALL_TIMEOUT_S}s"
        ) from exc
    if proc.returncode != 0:
        shutil.rmtree(path, ignore_errors=True)
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise FeastUnavailableError(
            f"pip install {FEAST_SPEC} failed (exit {proc.returncode}); is the package index "
            f"reachable? Last output:\n{tail}"
        )
    marker.write_text(FEAST_SPEC + "\n")
    return python


def feast_child_env() -> dict[str, str]:
    """Our environment for a process of the Feast venv, isolated from the project venv: a
    PYTHONPATH pointing at crmfs' site-packages would let it import pandas 3 over Feast's
    pandas 2."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def run_feast_bench(
    scenario_dir: Path, work_dir: Path, venv_path: Path = DEFAULT_VENV
) -> list[dict[str, Any]]:
    """Run ``feast_bench.py`` in the Feast venv and return its figures.

    Each figure is ``{"name": str, "value": float, "unit": str}``. Feast's logs go to our stderr
    as they come, so a long run shows progress; only stdout is parsed.
    """
    python = ensure_feast_venv(venv_path)
    script = BENCH_DIR / "feast_bench.py"
    cmd = [str(python), str(script), str(Path(scenario_dir).resolve()), str(Path(work_dir))]
    env = feast_child_env()
    try:
        proc = subprocess.run(
            cmd,
            stdout=subprocess.PIPE,
            stderr=None,
            text=True,
            env=env,
            timeout=RUN_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise FeastUnavailableError(f"Feast bench did not finish within {RUN_TIMEOUT_S}s") from exc
    if proc.returncode != 0:
        raise FeastUnavailableError(f"Feast bench failed with exit code {proc.returncode}")
    try:
        figures = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise FeastUnavailableError(
            f"Feast bench printed no JSON on stdout: {proc.stdout[-500:]!r}"
        ) from exc
    if not isinstance(figures, list) or not all(
        isinstance(f, dict) and {"name", "value", "unit"} <= f.keys() for f in figures
    ):
        raise FeastUnavailableError(f"unexpected Feast bench output: {figures!r}")
    return figures


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python bench/feast_env.py SCENARIO_DIR WORK_DIR", file=sys.stderr)
        return 2
    figures = run_feast_bench(Path(args[0]), Path(args[1]))
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
