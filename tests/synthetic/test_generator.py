"""Tests for the synthetic CRM generator (crmfs.synthetic)."""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from crmfs.synthetic import DEFAULT_END, TABLES, SyntheticCrm, generate_crm
from crmfs.synthetic.names import FIRST_NAMES

SCALE = 200
EVENT_TABLES = ("email_events", "web_events", "support_tickets", "purchases")
IDENTITY_KEYS = {
    "crm_a_contacts": "contact_id",
    "crm_b_leads": "lead_id",
    "marketing_contacts": "subscriber_id",
}
TS = pa.timestamp("us", tz="UTC")


@pytest.fixture(scope="module")
def crm(tmp_path_factory: pytest.TempPathFactory) -> SyntheticCrm:
    return generate_crm(tmp_path_factory.mktemp("crm"), scale=SCALE, seed=3)


@pytest.fixture(scope="module")
def frames(crm: SyntheticCrm) -> dict[str, pd.DataFrame]:
    return {name: pq.read_table(path).to_pandas() for name, path in crm.files.items()}


@pytest.fixture(scope="module")
def truth(frames: dict[str, pd.DataFrame]) -> dict[tuple[str, str], str]:
    gt = frames["ground_truth"]
    return dict(zip(zip(gt["table"], gt["record_id"], strict=True), gt["person_id"], strict=True))


def _digits(phone: str) -> str:
    """The 10-digit national number behind any of the generated phone layouts."""
    return re.sub(r"\D", "", phone)[-10:]


def _identity_rows(
    frames: dict[str, pd.DataFrame], truth: dict[tuple[str, str], str]
) -> pd.DataFrame:
    """crm_a and crm_b rows with their person_id and normalised email/phone."""
    parts = []
    for table in ("crm_a_contacts", "crm_b_leads"):
        df = frames[table]
        key = IDENTITY_KEYS[table]
        parts.append(
            pd.DataFrame(
                {
                    "person_id": [truth[(table, r)] for r in df[key]],
                    "email": df["email"].str.strip().str.lower(),
                    "phone": df["phone"].map(_digits, na_action="ignore"),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


# --- determinism and bookkeeping -------------------------------------------------------------


def test_same_seed_gives_byte_identical_files(crm: SyntheticCrm, tmp_path: Path) -> None:
    again = generate_crm(tmp_path, scale=SCALE, seed=3)
    assert again.counts == crm.counts
    for name in TABLES:
        assert again.files[name].read_bytes() == crm.files[name].read_bytes(), name


def test_different_seed_gives_different_data(crm: SyntheticCrm, tmp_path: Path) -> None:
    other = generate_crm(tmp_path, scale=SCALE, seed=4)
    for name in ("crm_a_contacts", "web_events", "purchases", "ground_truth"):
        assert other.files[name].read_bytes() != crm.files[name].read_bytes(), name


def test_files_and_counts_match(crm: SyntheticCrm) -> None:
    assert set(crm.files) == set(TABLES) == set(crm.counts)
    assert crm.end == DEFAULT_END
    for name, path in crm.files.items():
        assert path == crm.out_dir / f"{name}.parquet"
        assert pq.ParquetFile(path).metadata.num_rows == crm.counts[name] > 0, name
    assert not list(crm.out_dir.glob("*.tmp"))


def test_events_per_person_in_target_range(crm: SyntheticCrm) -> None:
    per_person = sum(crm.counts[t] for t in EVENT_TABLES) / SCALE
    assert 35 <= per_person <= 70


def test_progress_callback_and_argument_checks(tmp_path: Path) -> None:
    messages: list[str] = []
    generate_crm(tmp_path, scale=5, progress=messages.append)
    assert any("web_events" in m for m in messages)
    with pytest.raises(ValueError, match="timezone-aware"):
        generate_crm(tmp_path, scale=5, end=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="scale"):
        generate_crm(tmp_path, scale=0)
    with pytest.raises(ValueError, match="seed"):
        generate_crm(tmp_path, scale=5, seed=-1)
    with pytest.raises(ValueError, match="days"):
        generate_crm(tmp_path, scale=5, days=0)


# --- time ---------------------------------------------------------------------------------------


def _check_window(path: Path, end: datetime, days: int) -> int:
    """Assert every timestamp column in the file is UTC and inside the window; count columns."""
    table = pq.read_table(path)
    checked = 0
    for field in table.schema:
        if pa.types.is_timestamp(field.type):
            assert field.type == TS, (path.name, field.name)
            col = table.column(field.name).to_pandas()
            assert col.min() >= end - timedelta(days=days), (path.name, field.name)
            assert col.max() <= end, (path.name, field.name)
            checked += 1
    return checked


def test_timestamps_are_utc_and_inside_window(crm: SyntheticCrm) -> None:
    checked = sum(_check_window(path, crm.end, 90) for path in crm.files.values())
    assert checked == 14  # one per reference table (not ground truth), two per event table


def test_custom_end_and_days(tmp_path: Path) -> None:
    end = datetime(2025, 3, 1, 12, tzinfo=UTC)
    result = generate_crm(tmp_path, scale=30, seed=1, end=end, days=10)
    assert result.end == end
    for path in result.files.values():
        _check_window(path, end, 10)


def test_arrival_after_event_sorted_with_late_events(frames: dict[str, pd.DataFrame]) -> None:
    for name in EVENT_TABLES:
        df = frames[name]
        assert list(df.columns[:3]) == ["event_id", "event_time", "arrival_time"]
        assert (df["arrival_time"] >= df["event_time"]).all(), name
        assert df["arrival_time"].is_monotonic_increasing, name
    web = frames["web_events"].drop_duplicates("event_id")
    delay = web["arrival_time"] - web["event_time"]
    late = (delay > timedelta(hours=1)).mean()
    assert 0.01 < late < 0.06
    assert delay.max() <= timedelta(days=2)
    assert (delay < timedelta(minutes=1)).mean() > 0.5  # the median event arrives in seconds


def test_redeliveries_repeat_the_event_elsewhere(frames: dict[str, pd.DataFrame]) -> None:
    for name in EVENT_TABLES:
        df = frames[name]
        dup_ids = df.loc[df["event_id"].duplicated(), "event_id"]
        if name in ("web_events", "email_events"):  # the big tables surely have some
            assert 0.003 < len(dup_ids) / len(df) < 0.03, name
        content = [c for c in df.columns if c != "arrival_time"]
        gaps = []
        for event_id in dup_ids:
            copies = df[df["event_id"] == event_id]
            assert len(copies[content].astype(str).drop_duplicates()) == 1, (name, event_id)
            gaps.append(copies.index.max() - copies.index.min())
        if name == "web_events":  # the copy arrives later, so it sits elsewhere in the file
            assert sum(gaps) / len(gaps) > 5


def test_reference_tables_have_unique_ids(frames: dict[str, pd.DataFrame]) -> None:
    keys = {**IDENTITY_KEYS, "accounts": "account_id", "products": "item_id"}
    for name, key in keys.items():
        assert frames[name][key].is_unique, name
    for name in (*keys, "opportunities"):
        assert frames[name]["event_id"].is_unique, name
    assert frames["crm_a_contacts"]["contact_id"].str.fullmatch(r"SFC-\d{6}").all()
    assert frames["crm_b_leads"]["lead_id"].str.startswith("HS-").all()


# --- identities and ground truth -----------------------------------------------------------


def test_ground_truth_covers_every_identity_record(
    frames: dict[str, pd.DataFrame], truth: dict[tuple[str, str], str]
) -> None:
    gt = frames["ground_truth"]
    assert not gt.duplicated(["table", "record_id"]).any()
    expected = {(t, r) for t, key in IDENTITY_KEYS.items() for r in frames[t][key]}
    expected |= {("web_events", c) for c in frames["web_events"]["cookie_id"].unique()}
    assert set(truth) == expected
    assert gt["person_id"].nunique() == SCALE  # everyone shows up somewhere


def test_noisy_duplicates_map_to_one_person(
    frames: dict[str, pd.DataFrame], truth: dict[tuple[str, str], str]
) -> None:
    contacts = frames["crm_a_contacts"].assign(
        person_id=lambda d: [truth[("crm_a_contacts", c)] for c in d["contact_id"]]
    )
    groups = [g for _, g in contacts.groupby("person_id") if len(g) > 1]
    assert len(groups) >= 10
    # The duplicates are mostly noisy copies: they differ somewhere...
    fields = ["first_name", "last_name", "email", "phone", "city"]
    noisy = sum(len(g[fields].astype(str).drop_duplicates()) > 1 for g in groups)
    assert noisy / len(groups) > 0.8
    # ...yet mostly agree once case and spacing are normalised.
    same_last = [g["last_name"].str.replace(" ", "").str.casefold().nunique() == 1 for g in groups]
    assert sum(same_last) / len(groups) > 0.6


def test_sources_overlap_and_noise_kinds(
    frames: dict[str, pd.DataFrame], truth: dict[tuple[str, str], str]
) -> None:
    in_a = {truth[("crm_a_contacts", c)] for c in frames["crm_a_contacts"]["contact_id"]}
    in_b = {truth[("crm_b_leads", c)] for c in frames["crm_b_leads"]["lead_id"]}
    assert 0.35 < len(in_a & in_b) / SCALE < 0.65
    a = frames["crm_a_contacts"]
    phones = a["phone"].dropna()
    layouts = {
        r"\+1 \d{3}-\d{3}-\d{4}",
        r"\(\d{3}\) \d{3} \d{4}",
        r"\d{10}",
        r"001-\d{3}-\d{3}-\d{4}",
    }
    assert all(phones.str.fullmatch(p).any() for p in layouts)
    assert a["email"].isna().any()
    assert a["phone"].isna().any()
    names = pd.concat([a["first_name"], a["last_name"]])
    assert (names.str.isupper() & (names.str.len() > 2)).any()
    assert (names != names.str.strip()).any()
    # Some person appears under both their given name and a nickname ("Robert" and "Bob").
    given: dict[str, set[str]] = defaultdict(set)
    for table, key in IDENTITY_KEYS.items():
        df = frames[table].dropna(subset=["first_name"])
        for record, first in zip(df[key], df["first_name"], strict=True):
            given[truth[(table, record)]].add(first.strip().casefold())
    pairs = {(c.casefold(), n.casefold()) for c, nicks in FIRST_NAMES.items() for n in nicks}
    assert any((c, n) in pairs for forms in given.values() for c in forms for n in forms)


def test_shared_household_phones_across_people(
    frames: dict[str, pd.DataFrame], truth: dict[tuple[str, str], str]
) -> None:
    rows = _identity_rows(frames, truth).dropna(subset=["phone"])
    people_per_phone = rows.groupby("phone")["person_id"].nunique()
    assert (people_per_phone > 1).sum() >= 3


def test_shared_info_addresses_across_people(
    frames: dict[str, pd.DataFrame], truth: dict[tuple[str, str], str]
) -> None:
    rows = _identity_rows(frames, truth).dropna(subset=["email"])
    info = rows[rows["email"].str.startswith("info@")]
    people_per_address = info.groupby("email")["person_id"].nunique()
    assert (people_per_address > 1).any()
    assert frames["marketing_contacts"]["email"].str.lower().str.startswith("info@").any()


# --- behaviour ---------------------------------------------------------------------------------


def test_event_identifiers_resolve_to_crm_a_people(
    frames: dict[str, pd.DataFrame], truth: dict[tuple[str, str], str]
) -> None:
    contacts = set(frames["crm_a_contacts"]["contact_id"])
    web = frames["web_events"]
    known = web.dropna(subset=["customer_id"])
    assert set(known["customer_id"]) <= contacts
    assert set(frames["purchases"]["customer_id"]) <= contacts
    for cookie, customer in set(zip(known["cookie_id"], known["customer_id"], strict=True)):
        assert truth[("web_events", cookie)] == truth[("crm_a_contacts", customer)]
    # Cookies that log in mid-window: anonymous first, identified afterwards.
    logins = 0
    for _, g in web.sort_values("event_time").groupby("cookie_id"):
        anon = g["customer_id"].isna().to_numpy()
        if anon.any() and not anon.all():
            assert not anon[anon.argmin() :].any()  # once logged in, stays logged in
            logins += 1
    assert logins >= 5
    subscribers = set(frames["marketing_contacts"]["email"])
    assert set(frames["email_events"]["email"]) <= subscribers
    # Support tickets are mostly written from an address found on the person's records.
    addresses = set(_identity_rows(frames, truth)["email"].dropna())
    addresses |= set(frames["marketing_contacts"]["email"].str.lower())
    tickets = frames["support_tickets"]
    assert tickets["email"].isin(addresses).mean() > 0.8
    assert tickets["csat"].dropna().between(1, 5).all()
    assert tickets["csat"].isna().any()


def test_purchases_reference_products_with_exact_amounts(frames: dict[str, pd.DataFrame]) -> None:
    products = frames["products"].set_index("item_id")
    purchases = frames["purchases"]
    assert purchases["item_id"].isin(products.index).all()
    price = products.loc[purchases["item_id"], "price"].to_numpy()
    for p, q, amount in zip(price, purchases["quantity"], purchases["amount"], strict=True):
        assert amount == round(p * q, 2)
    assert (purchases["quantity"] >= 1).all()
    assert (purchases["currency"] == "USD").all()


def test_items_are_skewed_and_tastes_learnable(frames: dict[str, pd.DataFrame]) -> None:
    web = frames["web_events"]
    views = web[web["event_type"] == "product_view"]
    counts = views["item_id"].value_counts()
    top_decile = counts.iloc[: len(frames["products"]) // 10].sum() / counts.sum()
    assert top_decile > 0.35  # uniform popularity would give 0.1
    category = frames["products"].set_index("item_id")["category"]
    views = views.dropna(subset=["customer_id"]).assign(cat=lambda d: category[d["item_id"]].values)
    views = views.groupby("customer_id").filter(lambda g: len(g) >= 15)
    assert views["customer_id"].nunique() >= 20

    def mean_top_share(df: pd.DataFrame) -> float:
        tops = df.groupby("customer_id")["cat"].agg(
            lambda c: c.value_counts(normalize=True).iloc[0]
        )
        return float(tops.mean())

    # Baseline: the same views with categories shuffled across customers (no personal taste).
    shuffled = views.assign(cat=views["cat"].sample(frac=1.0, random_state=0).to_numpy())
    assert mean_top_share(views) > mean_top_share(shuffled) + 0.1


def test_opportunity_stages_progress_in_order(frames: dict[str, pd.DataFrame]) -> None:
    order = ["Prospecting", "Qualification", "Proposal"]
    opps = frames["opportunities"]
    assert set(opps["contact_id"]) <= set(frames["crm_a_contacts"]["contact_id"])
    assert set(opps["account_id"]) <= set(frames["accounts"]["account_id"])
    for _, g in opps.groupby("opportunity_id"):
        stages = list(g.sort_values("stage_changed_at")["stage"])
        open_part = [s for s in stages if not s.startswith("Closed")]
        assert open_part == order[: len(open_part)]
        assert all(s.startswith("Closed") for s in stages[len(open_part) :])
        assert len(stages) - len(open_part) <= 1
    assert {"Closed Won", "Closed Lost"} <= set(opps["stage"])
