"""The identity graph's SQLite schema and the queries that read its assignments over time."""

from __future__ import annotations

import sqlite3

UNBOUNDED_PAST = -(2**62)
UNBOUNDED_FUTURE = 2**62

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    record_id TEXT PRIMARY KEY, seen_us INTEGER NOT NULL, keys TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS record_keys (
    kind TEXT NOT NULL, value TEXT NOT NULL, record_id TEXT NOT NULL,
    PRIMARY KEY (kind, value, record_id));
CREATE TABLE IF NOT EXISTS assignments (
    record_id TEXT NOT NULL, golden_id TEXT NOT NULL, valid_from_us INTEGER NOT NULL,
    valid_to_us INTEGER, change_seq INTEGER NOT NULL, effective_from_us INTEGER);
CREATE INDEX IF NOT EXISTS assignments_of_record ON assignments (record_id, valid_from_us);
CREATE INDEX IF NOT EXISTS assignments_of_golden ON assignments (golden_id, valid_from_us);
CREATE TABLE IF NOT EXISTS base_assignments (
    record_id TEXT PRIMARY KEY, golden_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS clusters (golden_id TEXT PRIMARY KEY, first_record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS shared_keys (
    kind TEXT NOT NULL, value TEXT NOT NULL, reason TEXT NOT NULL, since_us INTEGER NOT NULL,
    PRIMARY KEY (kind, value));
CREATE TABLE IF NOT EXISTS operator_links (
    record_a TEXT NOT NULL, record_b TEXT NOT NULL, reason TEXT NOT NULL, at_us INTEGER NOT NULL,
    PRIMARY KEY (record_a, record_b));
CREATE TABLE IF NOT EXISTS links (
    record_a TEXT NOT NULL, record_b TEXT NOT NULL, probability REAL NOT NULL,
    at_us INTEGER NOT NULL, PRIMARY KEY (record_a, record_b));
CREATE TABLE IF NOT EXISTS do_not_link (
    record_a TEXT NOT NULL, record_b TEXT NOT NULL, reason TEXT NOT NULL, at_us INTEGER NOT NULL,
    PRIMARY KEY (record_a, record_b));
CREATE TABLE IF NOT EXISTS model (
    id INTEGER PRIMARY KEY CHECK (id = 1), model TEXT NOT NULL, threshold REAL NOT NULL,
    floor REAL NOT NULL, fitted_us INTEGER NOT NULL, lexicon TEXT);
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY, at_us INTEGER NOT NULL, kind TEXT NOT NULL,
    golden_id TEXT NOT NULL, record_id TEXT, retired TEXT NOT NULL, created TEXT NOT NULL,
    reason TEXT NOT NULL);
"""


# A record's first assignment reaches back without bound (see ``IdentityGraph.intervals``).
FIRST = "row_number() OVER (PARTITION BY record_id ORDER BY valid_from_us, change_seq) = 1"
RECORDED = f"""
SELECT record_id, golden_id,
       CASE WHEN {FIRST} THEN {UNBOUNDED_PAST} ELSE valid_from_us END,
       coalesce(valid_to_us, {UNBOUNDED_FUTURE})
FROM assignments"""
EFFECTIVE = f"""
SELECT record_id, golden_id, from_us, to_us FROM (
    SELECT record_id, golden_id,
           CASE WHEN {FIRST} THEN {UNBOUNDED_PAST}
                ELSE coalesce(effective_from_us, valid_from_us) END AS from_us,
           coalesce(lead(coalesce(effective_from_us, valid_from_us)) OVER (
               PARTITION BY record_id ORDER BY valid_from_us, change_seq), {UNBOUNDED_FUTURE})
               AS to_us
    FROM assignments)
WHERE from_us < to_us"""
CURRENT = f"""
SELECT record_id, golden_id, {UNBOUNDED_PAST}, {UNBOUNDED_FUTURE}
FROM assignments WHERE valid_to_us IS NULL"""
# As of a time: the assignment then, or the record's first one if it came later.
CURRENT_AT = f"""
SELECT record_id, golden_id, {UNBOUNDED_PAST}, {UNBOUNDED_FUTURE} FROM (
    SELECT record_id, golden_id, row_number() OVER (
        PARTITION BY record_id
        ORDER BY (valid_from_us <= ? AND (valid_to_us IS NULL OR valid_to_us > ?)) DESC,
                 valid_from_us, change_seq) AS pick
    FROM assignments)
WHERE pick = 1"""


def add_new_columns(db: sqlite3.Connection) -> None:
    """Graphs written before assignments had an effective time get the column (empty: read
    as the recorded time), and before models had a lexicon theirs (empty: the default)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(assignments)")}
    if "effective_from_us" not in columns:
        db.execute("ALTER TABLE assignments ADD COLUMN effective_from_us INTEGER")
    if "lexicon" not in {row[1] for row in db.execute("PRAGMA table_info(model)")}:
        db.execute("ALTER TABLE model ADD COLUMN lexicon TEXT")
