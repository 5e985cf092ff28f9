"""The identity graph's tables and statements, for SQLite and PostgreSQL.

The tables are the same on both (``SCHEMA`` for SQLite, ``POSTGRES_SCHEMA`` for
PostgreSQL, which differ only in column types), and every statement the graph runs is
written once, in SQL both engines read: ``?`` parameters (the PostgreSQL store passes them
as ``%s``), ``ON CONFLICT`` upserts, aliased subqueries, and ``ORDER BY rowid`` for the
order records were added in (SQLite's implicit row id; a ``rowid`` identity column in
PostgreSQL).
"""

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
CREATE TABLE IF NOT EXISTS graph_state (
    id INTEGER PRIMARY KEY CHECK (id = 1), generation INTEGER NOT NULL);
INSERT INTO graph_state (id, generation) VALUES (1, 0) ON CONFLICT DO NOTHING;
"""

# The same tables in PostgreSQL, in the schema ``{schema}`` (quoted by the caller).
# Microseconds need BIGINT, probabilities DOUBLE PRECISION (PostgreSQL's REAL is 4 bytes);
# ids sort byte by byte (COLLATE "C"), as in SQLite, whatever the database's locale.
POSTGRES_SCHEMA = """
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.records (
    rowid BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    record_id TEXT COLLATE "C" PRIMARY KEY, seen_us BIGINT NOT NULL, keys TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS {schema}.record_keys (
    kind TEXT NOT NULL, value TEXT NOT NULL, record_id TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (kind, value, record_id));
CREATE TABLE IF NOT EXISTS {schema}.assignments (
    record_id TEXT COLLATE "C" NOT NULL, golden_id TEXT COLLATE "C" NOT NULL,
    valid_from_us BIGINT NOT NULL, valid_to_us BIGINT, change_seq BIGINT NOT NULL,
    effective_from_us BIGINT);
CREATE INDEX IF NOT EXISTS assignments_of_record
    ON {schema}.assignments (record_id, valid_from_us);
CREATE INDEX IF NOT EXISTS assignments_of_golden
    ON {schema}.assignments (golden_id, valid_from_us);
CREATE TABLE IF NOT EXISTS {schema}.base_assignments (
    record_id TEXT COLLATE "C" PRIMARY KEY, golden_id TEXT COLLATE "C" NOT NULL);
CREATE TABLE IF NOT EXISTS {schema}.clusters (
    golden_id TEXT COLLATE "C" PRIMARY KEY, first_record TEXT COLLATE "C" NOT NULL);
CREATE TABLE IF NOT EXISTS {schema}.shared_keys (
    kind TEXT NOT NULL, value TEXT NOT NULL, reason TEXT NOT NULL, since_us BIGINT NOT NULL,
    PRIMARY KEY (kind, value));
CREATE TABLE IF NOT EXISTS {schema}.operator_links (
    record_a TEXT COLLATE "C" NOT NULL, record_b TEXT COLLATE "C" NOT NULL,
    reason TEXT NOT NULL, at_us BIGINT NOT NULL, PRIMARY KEY (record_a, record_b));
CREATE TABLE IF NOT EXISTS {schema}.links (
    record_a TEXT COLLATE "C" NOT NULL, record_b TEXT COLLATE "C" NOT NULL,
    probability DOUBLE PRECISION NOT NULL, at_us BIGINT NOT NULL,
    PRIMARY KEY (record_a, record_b));
CREATE TABLE IF NOT EXISTS {schema}.do_not_link (
    record_a TEXT COLLATE "C" NOT NULL, record_b TEXT COLLATE "C" NOT NULL,
    reason TEXT NOT NULL, at_us BIGINT NOT NULL, PRIMARY KEY (record_a, record_b));
CREATE TABLE IF NOT EXISTS {schema}.model (
    id INTEGER PRIMARY KEY CHECK (id = 1), model TEXT NOT NULL,
    threshold DOUBLE PRECISION NOT NULL, floor DOUBLE PRECISION NOT NULL,
    fitted_us BIGINT NOT NULL, lexicon TEXT);
CREATE TABLE IF NOT EXISTS {schema}.changes (
    seq BIGINT PRIMARY KEY, at_us BIGINT NOT NULL, kind TEXT NOT NULL,
    golden_id TEXT COLLATE "C" NOT NULL, record_id TEXT COLLATE "C", retired TEXT NOT NULL,
    created TEXT NOT NULL, reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS {schema}.graph_state (
    id INTEGER PRIMARY KEY CHECK (id = 1), generation BIGINT NOT NULL);
INSERT INTO {schema}.graph_state (id, generation) VALUES (1, 0) ON CONFLICT DO NOTHING;
"""
POSTGRES_TABLES = (
    "records",
    "record_keys",
    "assignments",
    "base_assignments",
    "clusters",
    "shared_keys",
    "operator_links",
    "links",
    "do_not_link",
    "model",
    "changes",
    "graph_state",
)


def add_new_columns(db: sqlite3.Connection) -> None:
    """Graphs written before assignments had an effective time get the column (empty: read
    as the recorded time), and before models had a lexicon theirs (empty: the default)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(assignments)")}
    if "effective_from_us" not in columns:
        db.execute("ALTER TABLE assignments ADD COLUMN effective_from_us INTEGER")
    if "lexicon" not in {row[1] for row in db.execute("PRAGMA table_info(model)")}:
        db.execute("ALTER TABLE model ADD COLUMN lexicon TEXT")


# -- the graph's generation: one more per write step that changed something -------------------

GENERATION = "SELECT generation FROM graph_state WHERE id = 1"
NEXT_GENERATION = "UPDATE graph_state SET generation = generation + 1 WHERE id = 1"

# -- writes ----------------------------------------------------------------------------------

INSERT_RECORD = "INSERT INTO records (record_id, seen_us, keys) VALUES (?, ?, ?)"
INSERT_RECORD_KEY = (
    "INSERT INTO record_keys (kind, value, record_id) VALUES (?, ?, ?) ON CONFLICT DO NOTHING"
)
UPSERT_SHARED_KEY = (
    "INSERT INTO shared_keys (kind, value, reason, since_us) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (kind, value) DO UPDATE SET reason = excluded.reason,"
    " since_us = excluded.since_us"
)
DELETE_CLUSTER = "DELETE FROM clusters WHERE golden_id = ?"
UPSERT_CLUSTER = (
    "INSERT INTO clusters (golden_id, first_record) VALUES (?, ?)"
    " ON CONFLICT (golden_id) DO UPDATE SET first_record = excluded.first_record"
)
UPSERT_BASE_ASSIGNMENT = (
    "INSERT INTO base_assignments (record_id, golden_id) VALUES (?, ?)"
    " ON CONFLICT (record_id) DO UPDATE SET golden_id = excluded.golden_id"
)
INSERT_CHANGE = (
    "INSERT INTO changes (seq, at_us, kind, golden_id, record_id, retired, created, reason)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
CLOSE_ASSIGNMENT = (
    "UPDATE assignments SET valid_to_us = ? WHERE record_id = ? AND valid_to_us IS NULL"
)
INSERT_ASSIGNMENT = (
    "INSERT INTO assignments (record_id, golden_id, valid_from_us, valid_to_us, change_seq,"
    " effective_from_us) VALUES (?, ?, ?, NULL, ?, ?)"
)
UPSERT_LINK = (
    "INSERT INTO links (record_a, record_b, probability, at_us) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (record_a, record_b) DO UPDATE SET probability = excluded.probability,"
    " at_us = excluded.at_us"
)
DELETE_LINKS = "DELETE FROM links"
UPSERT_DO_NOT_LINK = (
    "INSERT INTO do_not_link (record_a, record_b, reason, at_us) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (record_a, record_b) DO UPDATE SET reason = excluded.reason,"
    " at_us = excluded.at_us"
)
INSERT_OPERATOR_LINK = (
    "INSERT INTO operator_links (record_a, record_b, reason, at_us) VALUES (?, ?, ?, ?)"
)
DELETE_OPERATOR_LINK = "DELETE FROM operator_links WHERE record_a = ? AND record_b = ?"
UPSERT_MODEL = (
    "INSERT INTO model (id, model, threshold, floor, fitted_us, lexicon)"
    " VALUES (1, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET model = excluded.model,"
    " threshold = excluded.threshold, floor = excluded.floor,"
    " fitted_us = excluded.fitted_us, lexicon = excluded.lexicon"
)

# -- what restores the graph on open ---------------------------------------------------------

RECORDS = "SELECT record_id, seen_us, keys FROM records ORDER BY rowid"
RECORD_IDS = "SELECT record_id FROM records ORDER BY rowid"
OPEN_ASSIGNMENTS = (
    "SELECT record_id, golden_id, effective_from_us FROM assignments WHERE valid_to_us IS NULL"
)
BASE_ASSIGNMENTS = "SELECT record_id, golden_id FROM base_assignments"
CLUSTERS = "SELECT golden_id, first_record FROM clusters"
SHARED_KEYS = "SELECT kind, value, reason FROM shared_keys"
OPERATOR_LINKS = "SELECT record_a, record_b, reason FROM operator_links"
LAST_SEQ = "SELECT coalesce(max(seq), 0) FROM changes"
MODEL = "SELECT model, threshold, floor, lexicon FROM model"
HAS_MODEL = "SELECT 1 FROM model"
LINKS = "SELECT record_a, record_b, probability FROM links"
DO_NOT_LINK = "SELECT record_a, record_b FROM do_not_link"

# -- reads -----------------------------------------------------------------------------------

GOLDEN_ID_AT = (
    "SELECT golden_id FROM assignments WHERE record_id = ? AND valid_from_us <= ?"
    " AND (valid_to_us IS NULL OR valid_to_us > ?)"
)
SHARED_AT = "SELECT 1 FROM shared_keys WHERE kind = ? AND value = ? AND since_us <= ?"
GOLDEN_ID_OF_KEY_AT = (
    "SELECT a.golden_id FROM record_keys k JOIN assignments a USING (record_id)"
    " WHERE k.kind = ? AND k.value = ? AND a.valid_from_us <= ?"
    " AND (a.valid_to_us IS NULL OR a.valid_to_us > ?) ORDER BY a.record_id LIMIT 1"
)
MEMBERS_AT = (
    "SELECT record_id FROM assignments WHERE golden_id = ? AND valid_from_us <= ?"
    " AND (valid_to_us IS NULL OR valid_to_us > ?)"
)
CHANGES = "SELECT seq, at_us, kind, golden_id, record_id, retired, created, reason FROM changes"
CHANGES_AFTER = f"{CHANGES} WHERE seq > ? ORDER BY seq"
HISTORY = f"{CHANGES} WHERE golden_id = ? OR retired LIKE ? OR created LIKE ? ORDER BY seq"
REVIEW_LINKS = (
    "SELECT record_a, record_b, probability FROM links WHERE probability >= ?"
    " ORDER BY probability DESC, record_a, record_b"
)
LINK_PROBABILITY = "SELECT probability FROM links WHERE record_a = ? AND record_b = ?"

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
    FROM assignments) AS spans
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
    FROM assignments) AS picked
WHERE pick = 1"""
