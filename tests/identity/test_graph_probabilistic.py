"""The probabilistic layer in the identity graph: fitted on the records seen, applied to each
new record on arrival, kept across restarts, the same clusters streamed as loaded at once."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from crmfs.identity.deterministic import ChangeKind, IdentityRecord
from crmfs.identity.graph import IdentityGraph
from crmfs.synthetic import generate_crm, identity_records


@pytest.fixture(scope="module")
def crm(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[IdentityRecord], dict[str, str]]:
    """The synthetic CRM's records in time order, and each record's real person."""
    folder = tmp_path_factory.mktemp("crm")
    generated = generate_crm(folder, scale=400, seed=3, progress=None)
    return identity_records(generated.files["ground_truth"].parent)


def _pairwise_f1(clusters: dict[str, frozenset[str]], truth: dict[str, str]) -> float:
    golden = {r: g for g, members in clusters.items() for r in members}
    pairs = lambda c: sum(n * (n - 1) // 2 for n in c.values())  # noqa: E731
    found = pairs(Counter(golden.values()))
    true = pairs(Counter(truth[r] for r in golden))
    hits = pairs(Counter((golden[r], truth[r]) for r in golden))
    precision, recall = hits / found, hits / true
    return 2 * precision * recall / (precision + recall)


def _clock() -> int:
    return 1_000


def _shape(clusters: dict[str, frozenset[str]]) -> set[frozenset[str]]:
    return set(clusters.values())


def test_fitting_links_what_the_strong_keys_miss_and_survives_a_restart(
    tmp_path: Path, crm: tuple[list[IdentityRecord], dict[str, str]]
) -> None:
    records, truth = crm
    graph = IdentityGraph(tmp_path / "identity.db", _clock)
    graph.add_all(records)
    deterministic = _pairwise_f1(graph.clusters(), truth)
    report = graph.fit_matcher()
    assert report.candidate_pairs > 0
    fitted = graph.clusters()
    assert _pairwise_f1(fitted, truth) > deterministic + 0.1
    merges = [e for e in graph.changes_after(0) if e.reason.startswith("probabilistic")]
    assert merges
    assert all(e.kind is ChangeKind.MERGED for e in merges)
    # Every record's assignment moved with the merges: golden ids read back per record.
    for gid, members in fitted.items():
        assert {graph.golden_id(r) for r in members} == {gid}
    # The layer (model, pairs, decisions) is restored as it was, and the deterministic
    # clusters under it stay apart from the final ones.
    base = graph.linker.clusters()
    assert len(base) > len(fitted)
    graph.close()
    again = IdentityGraph(tmp_path / "identity.db", _clock)
    assert again.clusters() == fitted  # read from the stored assignments
    assert again.linker.clusters() == base
    assert again.layer is not None  # rebuilt when first needed
    assert again.clusters() == fitted
    again.close()


def test_streaming_after_fitting_gives_the_first_loads_clusters(
    tmp_path: Path, crm: tuple[list[IdentityRecord], dict[str, str]]
) -> None:
    records, _ = crm
    loaded = IdentityGraph(tmp_path / "loaded.db", _clock)
    loaded.add_all(records)
    loaded.fit_matcher()
    assert loaded.layer is not None
    model = loaded.layer.matcher.model
    assert model is not None
    for seed in (0, 1):
        streamed = IdentityGraph(tmp_path / f"streamed{seed}.db", _clock)
        streamed.use_model(model, lexicon=loaded.layer.lexicon)
        shuffled = list(records)
        random.Random(seed).shuffle(shuffled)
        for record in shuffled:  # one at a time, each scored on arrival
            streamed.add(record)
        assert _shape(streamed.clusters()) == _shape(loaded.clusters())
        streamed.close()
    loaded.close()


def test_a_probabilistic_link_is_explained_and_can_be_undone(
    tmp_path: Path, crm: tuple[list[IdentityRecord], dict[str, str]]
) -> None:
    records, _ = crm
    graph = IdentityGraph(tmp_path / "identity.db", _clock)
    graph.add_all(records)
    graph.fit_matcher()
    linker, layer = graph.linker, graph.layer
    assert layer is not None

    def named(record: str) -> bool:
        return bool(layer.columns(record)["first"] and layer.columns(record)["last"])

    # Two records of different deterministic clusters the layer joined, both named.
    a, b = next(
        (a, b)
        for _, members in sorted(graph.clusters().items())
        for a in sorted(members)
        for b in sorted(members)
        if a < b and linker.golden_id(a) != linker.golden_id(b) and named(a) and named(b)
    )
    probability, contributions = graph.link_evidence(a, b)
    assert contributions
    assert set(contributions) >= {"first", "last"}
    assert probability is None or 0.0 <= probability <= 1.0
    graph.do_not_link(a, b, "different people")
    assert graph.golden_id(a) != graph.golden_id(b)
    graph.close()
    again = IdentityGraph(tmp_path / "identity.db", _clock)
    assert again.golden_id(a) != again.golden_id(b)
    again.close()


def test_pairs_below_the_threshold_wait_for_review(
    tmp_path: Path, crm: tuple[list[IdentityRecord], dict[str, str]]
) -> None:
    records, _ = crm
    graph = IdentityGraph(tmp_path / "identity.db", _clock)
    graph.add_all(records)
    assert graph.review_pairs(0.05) == []  # nothing scored before a model is fitted
    graph.fit_matcher()
    pending = graph.review_pairs(0.05, limit=1000)
    assert pending
    assert [p for _, _, p in pending] == sorted((p for _, _, p in pending), reverse=True)
    assert all(p >= 0.05 and graph.golden_id(a) != graph.golden_id(b) for a, b, p in pending)
    a, b, _ = pending[0]
    graph.link(a, b, "reviewed: same person")
    assert (a, b) not in {(x, y) for x, y, _ in graph.review_pairs(0.05, limit=1000)}
    graph.close()
