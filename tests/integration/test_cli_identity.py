"""``crmfs identity``: show, explain, merge, split and shared, on a project on disk."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from crmfs.cli.app import app, main
from crmfs.identity.service import IdentityNotFound
from crmfs.store import FeatureStore

runner = CliRunner()

DEFINITIONS = """\
from crmfs import Aggregation, Entity, EventSource, FeatureView

person = Entity("person", join_key="golden_id", identity=True)
touches = EventSource(
    "touches",
    schema={"event_id": "string", "ts": "timestamp", "email": "string", "phone": "string",
            "amount": "float"},
    event_id="event_id",
    event_time="ts",
    identifiers={"email": "email", "phone": "phone"},
)
engagement = FeatureView(
    "engagement",
    entity=person,
    source=touches,
    features=[
        Aggregation("touches", "count", windows=["30d"]),
        Aggregation("spend", "sum", field="amount", windows=["30d"]),
    ],
)
"""
ANN, BOB, CAROL = "email=ann@example.com", "email=bob@example.com", "email=carol@example.com"
PHONE = "+14155550100"  # "(415) 555-0100", normalized


def _ok(*args: str) -> str:
    """The output, with runs of whitespace as one space (rich wraps lines at 80 columns)."""
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output + str(result.exception)
    return " ".join(result.output.split())


def _fails(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run ``crmfs`` as a user does (through ``main``): the exit code and stderr."""
    monkeypatch.setattr(sys, "argv", ["crmfs", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return " ".join(captured.err.split())


@pytest.fixture
def repo(tmp_path: Path) -> tuple[str, str]:
    """Ann and Bob share a phone (one person so far); Carol is on her own."""
    (tmp_path / "crmfs.yaml").write_text(
        "project: crm\ndefinitions: definitions.py\ndata_dir: data\n"
    )
    (tmp_path / "definitions.py").write_text(DEFINITIONS)
    start = datetime.now(UTC) - timedelta(hours=1)
    events = [
        ("e1", "Ann@Example.com", "(415) 555-0100", 5.0),
        ("e2", "bob@example.com", "415 555 0100", 7.0),
        ("e3", "carol@example.com", None, 3.0),
    ]
    lines = [
        json.dumps(
            {
                "event_id": eid,
                "ts": (start + timedelta(minutes=i)).isoformat(),
                "email": email,
                "phone": phone,
                "amount": amount,
            }
        )
        for i, (eid, email, phone, amount) in enumerate(events)
    ]
    (tmp_path / "touches.jsonl").write_text("\n".join(lines) + "\n")
    options = ("--repo", str(tmp_path))
    _ok("apply", *options)
    assert "3 accepted" in _ok("ingest", "touches", str(tmp_path / "touches.jsonl"), *options)
    return options


def _json(*args: str) -> Any:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output + str(result.exception)
    return json.loads(result.output)


def _online(repo: tuple[str, str], *golden_ids: str) -> list[tuple[int, float]]:
    store = FeatureStore(repo[1])
    try:
        refs = ["engagement:touches_30d", "engagement:spend_30d"]
        got = store.get_online_features(refs, [{"golden_id": g} for g in golden_ids])
        return [(got.values[refs[0]][i], got.values[refs[1]][i]) for i in range(len(golden_ids))]
    finally:
        store.close()


def test_show_by_golden_id_record_id_and_identifier(repo: tuple[str, str]) -> None:
    card = _json("identity", "show", ANN, *repo)
    golden = card["golden_id"]
    assert golden.startswith("g")
    members = {m["record_id"]: m["identifiers"] for m in card["members"]}
    assert sorted(
        map(sorted, ([(i["kind"], i["value"]) for i in ids] for ids in members.values()))
    ) == [
        [("email", "ann@example.com"), ("phone", PHONE)],
        [("email", "bob@example.com"), ("phone", PHONE)],
    ]
    assert [e["kind"] for e in card["history"]] == ["new", "joined"]
    assert all(e["at"].endswith("+00:00") for e in card["history"])
    assert all(m["first_seen"].endswith("+00:00") for m in card["members"])
    # The same card by its golden id and by either record id.
    assert _json("identity", "show", golden, *repo) == card
    for record_id in members:
        assert _json("identity", "show", record_id, *repo) == card
    assert _json("identity", "show", "phone=(415) 555-0100", *repo) == card  # normalized
    text = _ok("identity", "show", golden, *repo)
    assert f"golden id {golden} (2 record(s))" in text
    assert "ann@example.com" in text
    assert PHONE in text
    assert "history:" in text
    assert "joined" in text


def test_explain_linked_and_not_linked(repo: tuple[str, str]) -> None:
    linked = _json("identity", "explain", ANN, BOB, *repo)
    assert linked["same_person"] is True
    assert linked["golden_a"] == linked["golden_b"]
    assert linked["summary"] == "linked directly by a shared strong identifier"
    assert linked["shared_identifiers"] == [{"kind": "phone", "value": PHONE, "status": "links"}]
    assert linked["operator_link"] is None
    apart = _json("identity", "explain", ANN, CAROL, *repo)
    assert apart["same_person"] is False
    assert apart["golden_a"] != apart["golden_b"]
    assert apart["summary"] == "not linked: they share no identifier"
    assert apart["shared_identifiers"] == []
    text = _ok("identity", "explain", ANN, BOB, *repo)
    assert "linked directly by a shared strong identifier" in text
    assert "same person: yes" in text
    assert "operator link: none" in text
    assert "links" in text
    assert "same person: no" in _ok("identity", "explain", ANN, CAROL, *repo)


def test_merge_and_split_are_followed_online(repo: tuple[str, str]) -> None:
    ann = _json("identity", "show", ANN, *repo)["golden_id"]
    carol = _json("identity", "show", CAROL, *repo)["golden_id"]
    assert _online(repo, ann, carol) == [(2, 12.0), (1, 3.0)]

    merged = _ok("identity", "merge", ANN, CAROL, "--reason", "same person, she phoned", *repo)
    # The older golden id survives (the three were seen in one batch: the lower record id).
    kept = _json("identity", "show", CAROL, *repo)["golden_id"]
    (gone,) = {ann, carol} - {kept}
    assert f"merged {kept} retired {gone} (operator: same person, she phoned)" in merged
    assert f"1 change(s) now {ANN} is {kept}, {CAROL} is {kept}" in merged
    assert _online(repo, kept) == [(3, 15.0)]
    why = _json("identity", "explain", ANN, CAROL, *repo)
    assert why["same_person"] is True
    assert why["operator_link"] == "same person, she phoned"

    split = _ok("identity", "split", ANN, BOB, "--reason", "a shared office phone", *repo)
    ann_now = _json("identity", "show", ANN, *repo)
    bob_now = _json("identity", "show", BOB, *repo)
    bob = bob_now["golden_id"]
    assert ann_now["golden_id"] == kept
    assert bob not in (ann, carol)
    assert (
        f"split {kept} created {bob} (shared phone key, do not link: a shared office phone)"
        f" 1 change(s) now {ANN} is {kept}, {BOB} is {bob}"
    ) in split
    assert len(ann_now["members"]) == 2  # Ann and Carol, kept together by the operator's link
    assert [e["kind"] for e in ann_now["history"]][-2:] == ["merged", "split"]
    assert _online(repo, kept, bob) == [(2, 8.0), (1, 7.0)]
    assert "same person: no" in _ok("identity", "explain", ANN, BOB, *repo)


def test_shared_lists_identifiers_that_stopped_linking(repo: tuple[str, str]) -> None:
    assert _json("identity", "shared", *repo) == []
    assert "0 shared identifier(s)" in _ok("identity", "shared", *repo)
    _ok("identity", "split", ANN, BOB, "--reason", "a shared office phone", *repo)
    assert _json("identity", "shared", *repo) == [
        {
            "kind": "phone",
            "value": PHONE,
            "records": 2,
            "reason": "do not link: a shared office phone",
        }
    ]
    text = _ok("identity", "shared", *repo)
    assert PHONE in text
    assert "1 shared identifier(s)" in text
    why = _json("identity", "explain", ANN, BOB, *repo)
    assert why["shared_identifiers"] == [
        {"kind": "phone", "value": PHONE, "status": "shared: do not link: a shared office phone"}
    ]


def test_errors_are_clear_and_exit_non_zero(
    repo: tuple[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    unknown = _fails(monkeypatch, capsys, "identity", "show", "gnobody", *repo)
    assert "error: 'gnobody' is no golden id, record id or identifier" in unknown
    nobody = _fails(monkeypatch, capsys, "identity", "explain", ANN, "email=no@example.com", *repo)
    assert "no record carries 'email=no@example.com'" in nobody
    kind = _fails(monkeypatch, capsys, "identity", "show", "fax=123", *repo)
    assert "'fax' is not an identifier kind; kinds: email" in kind
    empty = _fails(monkeypatch, capsys, "identity", "merge", ANN, CAROL, "--reason", " ", *repo)
    assert "--reason: give a reason, it is kept in the audit trail" in empty
    # Nothing was merged by the refused command.
    assert _json("identity", "explain", ANN, CAROL, *repo)["same_person"] is False
    # Through the test runner the same error surfaces as the exception main() reports.
    result = runner.invoke(app, ["identity", "split", ANN, "rnobody", "--reason", "x", *repo])
    assert result.exit_code != 0
    assert isinstance(result.exception, IdentityNotFound)
    missing = runner.invoke(app, ["identity", "merge", ANN, CAROL, *repo])
    assert missing.exit_code == 2
    assert "--reason" in missing.output


def test_a_split_that_leaves_them_connected_says_so(repo: tuple[str, str], tmp_path: Path) -> None:
    # Ann's email and Bob's email also meet through a second phone: the split leaves one person.
    now = datetime.now(UTC).isoformat()
    more = tmp_path / "more.jsonl"
    more.write_text(
        "".join(
            json.dumps({"event_id": eid, "ts": now, "email": email, "phone": "415 555 0199"}) + "\n"
            for eid, email in (("e4", "ann@example.com"), ("e5", "bob@example.com"))
        )
    )
    _ok("ingest", "touches", str(more), *repo)
    out = _ok("identity", "split", ANN, BOB, "--reason", "a shared office phone", *repo)
    assert "still one cluster: other records connect them" in out
    assert _json("identity", "explain", ANN, BOB, *repo)["summary"] == (
        "linked through other records of the same cluster"
    )


def test_fit_turns_on_the_probabilistic_layer(repo: tuple[str, str]) -> None:
    text = _ok("identity", "fit", *repo)
    assert "fitted on 2 deterministic clusters" in text
    assert "golden ids now" in text
    why = _json("identity", "explain", ANN, CAROL, *repo)
    assert "email" in why["contributions"]  # the records carry no names: emails compared
    shown = _ok("identity", "explain", ANN, CAROL, *repo)
    assert "comparisons (log2 m/u):" in shown


def test_review_lists_pairs_to_decide(repo: tuple[str, str]) -> None:
    assert "0 pair(s) to review" in _ok("identity", "review", *repo)  # no model yet
    _ok("identity", "fit", *repo)
    pairs = _json("identity", "review", "--limit", "5", *repo)
    assert isinstance(pairs, list)
    assert all(set(p) == {"record_a", "record_b", "probability"} for p in pairs)
