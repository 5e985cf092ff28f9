"""Splink's figures on FEBRL4, measured in the same run as crmfs's, for comparison.

Splink is not a dependency of crmfs: it is installed into a virtual environment of its own
(``bench/.splink-venv``, never committed) and run there on the FEBRL CSV files by
``bench/splink_febrl_job.py`` in a subprocess. ``run_splink_febrl(data)`` returns the figures
``splink_febrl4_f1`` (F1 at Splink's best threshold, found with the labels: kinder to Splink
than crmfs's fixed 0.5), ``splink_records_per_s`` (FEBRL4 end to end, as crmfs's
``identity_records_per_s``) and ``splink_match_p99_ms`` (one new record against FEBRL4's 5,000
a-records by ``predict_between``); it raises ``SplinkUnavailableError`` with the reason when
Splink cannot be installed or fails.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from febrl_data import VenvUnavailableError, ensure_venv

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_VENV = BENCH_DIR / ".splink-venv"
SPEC = "splink==5.0.0"
JOB = BENCH_DIR / "splink_febrl_job.py"
MATCHED_ONE_BY_ONE = 100  # Splink takes a few hundred ms a record
JOB_TIMEOUT_S = 900


class SplinkUnavailableError(RuntimeError):
    """Splink could not be installed or run."""


def run_splink_febrl(data: Path, venv_path: Path = DEFAULT_VENV) -> list[dict[str, Any]]:
    try:
        python = ensure_venv(venv_path, SPEC)
    except VenvUnavailableError as exc:
        raise SplinkUnavailableError(str(exc)) from exc
    try:
        proc = subprocess.run(
            [str(python), str(JOB), str(data), str(MATCHED_ONE_BY_ONE)],
            capture_output=True,
            text=True,
            timeout=JOB_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise SplinkUnavailableError(f"Splink's FEBRL4 run took over {JOB_TIMEOUT_S} s") from exc
    if proc.returncode != 0:
        raise SplinkUnavailableError(f"Splink's FEBRL4 run failed: {proc.stderr.strip()[-300:]}")
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    print(
        f"[splink] {SPEC}: FEBRL4 best F1 {found['best_f1']:.4f} at probability "
        f"{found['best_threshold']:.3f} (F1 {found['f1_at_half']:.4f} at 0.5), "
        f"{found['seconds']:.2f} s end to end; one record against 5,000: "
        f"p50 {found['match_p50_ms']:.1f} ms, p99 {found['match_p99_ms']:.1f} ms "
        f"({found['matched']} records)",
        file=sys.stderr,
        flush=True,
    )
    return [
        {"name": "splink_febrl4_f1", "value": round(found["best_f1"], 4), "unit": "F1"},
        {
            "name": "splink_records_per_s",
            "value": round(found["records"] / found["seconds"], 1),
            "unit": "records/s",
        },
        {"name": "splink_match_p99_ms", "value": round(found["match_p99_ms"], 2), "unit": "ms"},
    ]
