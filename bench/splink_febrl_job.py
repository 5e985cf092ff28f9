"""Splink on FEBRL4 without soc_sec_id: run inside Splink's own virtual environment.

Not part of crmfs and never imported by it: ``bench/splink_febrl.py`` runs this file with the
Python of ``bench/.splink-venv`` (Splink and DuckDB only; no pandas, no crmfs) and reads the
JSON it prints. A standard Splink setup, as its documentation lays one out:

- comparisons: ``NameComparison`` on given name and surname, ``DateOfBirthComparison``,
  Jaro-Winkler levels on the address lines and the suburb, Levenshtein on the postcode,
  exact street number and state;
- prediction blocking: the same six single-column rules crmfs's bench uses;
- training: the prior from deterministic rules, u by random sampling (1e6 pairs), m by EM on
  two blocking rules (date of birth; given name and surname).

Figures: F1 at Splink's best threshold (the threshold that maximises F1 against the labels,
as the issue's reference figure was taken), F1 at probability 0.5, the end-to-end time, and
the latency of matching one new record against FEBRL4's 5,000 a-records with
``predict_between``.

Usage: ``python splink_febrl_job.py DATA_DIR MATCHED_ONE_BY_ONE``.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path
from typing import Any

import splink.comparison_library as cl
from splink import DuckDBAPI, Linker, SettingsCreator, block_on

COLUMNS = (
    "rec_id",
    "given_name",
    "surname",
    "street_number",
    "address_1",
    "address_2",
    "suburb",
    "postcode",
    "state",
    "date_of_birth",
)
BLOCKED_ON = ("given_name", "surname", "postcode", "date_of_birth", "suburb", "address_1")


def read(path: Path) -> dict[str, list[str | None]]:
    """A FEBRL CSV as columns, soc_sec_id left out, empty values as null."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {c: [(row[c] or "").strip() or None for row in rows] for c in COLUMNS}


def settings() -> SettingsCreator:
    return SettingsCreator(
        link_type="link_only",
        unique_id_column_name="rec_id",
        comparisons=[
            cl.NameComparison("given_name"),
            cl.NameComparison("surname"),
            cl.DateOfBirthComparison(
                "date_of_birth", input_is_string=True, datetime_format="%Y%m%d"
            ),
            cl.ExactMatch("street_number"),
            cl.JaroWinklerAtThresholds("address_1", [0.9, 0.75]),
            cl.JaroWinklerAtThresholds("address_2", [0.9, 0.75]),
            cl.JaroWinklerAtThresholds("suburb", [0.92, 0.8]),
            cl.LevenshteinAtThresholds("postcode", [1]),
            cl.ExactMatch("state"),
        ],
        blocking_rules_to_generate_predictions=[block_on(c) for c in BLOCKED_ON],
    )


def entity(rec_id: str) -> str:
    return rec_id.split("-")[1]


def best_f1(scored: list[tuple[float, bool]], matches: int) -> tuple[float, float, float]:
    """(best F1 over thresholds, its threshold, F1 at 0.5) from (probability, is a match)."""
    ordered = sorted(scored, key=lambda item: -item[0])
    hits = 0
    best = (0.0, 1.0)
    at_half = 0.0
    for k, (probability, hit) in enumerate(ordered, start=1):
        hits += hit
        score = 2 * hits / (k + matches)
        if score > best[0]:
            best = (score, probability)
        if probability >= 0.5:
            at_half = score
    return best[0], best[1], at_half


def main(data: Path, one_by_one: int) -> dict[str, Any]:
    a, b = read(data / "febrl4a.csv"), read(data / "febrl4b.csv")
    start = time.perf_counter()
    db = DuckDBAPI()
    left = db.register(a, dataset_display_name="febrl4a")
    right = db.register(b, dataset_display_name="febrl4b")
    linker = Linker([left, right], settings(), log_level="WARNING")
    linker.training.estimate_probability_two_random_records_match(
        [block_on("given_name", "surname", "date_of_birth")], recall=0.7
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6, seed=1)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("date_of_birth"))
    linker.training.estimate_parameters_using_expectation_maximisation(
        block_on("given_name", "surname")
    )
    predictions = linker.inference.predict(threshold_match_probability=0.001)
    rows = predictions.as_record_list()
    seconds = time.perf_counter() - start
    in_b = {entity(r) for r in b["rec_id"] if r}
    matches = sum(1 for r in a["rec_id"] if r and entity(r) in in_b)
    scored = [
        (float(r["match_probability"]), entity(r["rec_id_l"]) == entity(r["rec_id_r"]))
        for r in rows
    ]
    best, threshold, at_half = best_f1(scored, matches)

    latencies = []
    for k in range(one_by_one + 5):
        record = {c: [b[c][k]] for c in COLUMNS}
        t0 = time.perf_counter()
        new = db.register(record, dataset_display_name=f"new_{k}")
        found = linker.inference.predict_between(left, new, threshold_match_probability=0.5)
        found.as_record_list()
        if k >= 5:  # the first few calls warm Splink's caches up
            latencies.append(time.perf_counter() - t0)
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))]
    return {
        "best_f1": best,
        "best_threshold": threshold,
        "f1_at_half": at_half,
        "seconds": seconds,
        "records": len(a["rec_id"]) + len(b["rec_id"]),
        "match_p99_ms": p99 * 1e3,
        "match_p50_ms": latencies[len(latencies) // 2] * 1e3,
        "matched": len(latencies),
    }


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), int(sys.argv[2]))))
