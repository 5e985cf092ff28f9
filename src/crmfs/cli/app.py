"""``crmfs``: init, plan, apply, ingest, get, materialize, parity, quarantine, generate, demo,
identity (``crmfs.cli.identity_cmd``), worker and bus (``crmfs.cli.worker_cmd``), serve and
keys (``crmfs.cli.serve_cmd``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from crmfs.cli.identity_cmd import identity_app
from crmfs.cli.serve_cmd import keys_app, serve
from crmfs.cli.times import parse_time as _when
from crmfs.cli.worker_cmd import bus_app, worker
from crmfs.errors import ConfigError, CrmfsError
from crmfs.timestamps import from_micros

app = typer.Typer(
    help="crmfs: a feature store for recommenders on CRM data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(identity_app, name="identity")
app.command()(worker)
app.add_typer(bus_app, name="bus")
app.command()(serve)
app.add_typer(keys_app, name="keys")
console = Console()
err = Console(stderr=True)
Repo = Annotated[Path, typer.Option("--repo", "-r", help="Project folder (holds crmfs.yaml)")]


def _store(repo: Path) -> Any:
    from crmfs.store import FeatureStore

    return FeatureStore(repo)


@app.command()
def init(folder: Annotated[Path, typer.Argument(help="Folder for the new project")]) -> None:
    """Create a project (crmfs.yaml, definitions.py, sample data) that works out of the box."""
    from crmfs.cli.scaffold import scaffold

    for path in scaffold(folder):
        console.print(f"created {path}")
    console.print(
        f"next: cd {folder} && crmfs apply && crmfs ingest web_events data/sample_web_events.csv"
    )


@app.command()
def plan(repo: Repo = Path(".")) -> None:
    """Show what `apply` would change and whether values change."""
    changes = _store(repo).plan()
    _print_changes(changes, "would")


@app.command()
def apply(repo: Repo = Path(".")) -> None:
    """Register the definitions; new versions are rebuilt from the event log."""
    changes = _store(repo).apply()
    _print_changes(changes, "applied")


def _print_changes(changes: list[Any], verb: str) -> None:
    if not changes:
        console.print("no changes")
        return
    table = Table("kind", "name", "change", "version", "alters values")
    for c in changes:
        table.add_row(
            c.kind, c.name, c.change.value, f"v{c.version}", "yes" if c.alters_values else "no"
        )
    console.print(table)
    console.print(f"{len(changes)} change(s) {verb}")


@app.command()
def ingest(
    source: Annotated[str, typer.Argument(help="Source name")],
    file: Annotated[Path, typer.Argument(help="CSV, JSON lines or Parquet file")],
    repo: Repo = Path("."),
    chunk_rows: Annotated[int, typer.Option(help="Records per acknowledged batch")] = 50_000,
) -> None:
    """Ingest a file: validated, logged durably, applied online, bad records quarantined."""
    store = _store(repo)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=not err.is_terminal,
    ) as bar:
        task = bar.add_task(f"ingest {file.name}", total=None)

        def advance(chunk: Any, report: Any) -> None:
            bar.update(task, completed=chunk.position, total=chunk.total)
            bar.update(task, description=f"ingest {file.name} ({report.accepted:,} accepted)")

        report = store.ingest_file(source, file, chunk_rows=chunk_rows, progress=advance)
    console.print(
        f"{report.received:,} received, {report.accepted:,} accepted, "
        f"{report.duplicates:,} duplicates, {report.quarantined:,} quarantined"
    )
    if report.already_quarantined:
        console.print(f"{report.already_quarantined:,} of them were already in the quarantine")
    if report.quarantined:
        console.print("see them with: crmfs quarantine")


@app.command()
def quarantine(
    repo: Repo = Path("."),
    source: Annotated[str | None, typer.Option(help="Only this source")] = None,
    limit: Annotated[int, typer.Option(help="Newest N records", min=1)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False,
) -> None:
    """List rejected records with their reasons, newest first."""
    records = _store(repo).quarantine(source, limit)
    if as_json:
        rows = [
            {
                "id": r.id,
                "source": r.source,
                "quarantined_at": from_micros(r.quarantined_at).isoformat(),
                "field": r.field,
                "reason": r.reason,
                "record": r.record,
            }
            for r in records
        ]
        print(json.dumps(rows, default=str, indent=2))
        return
    table = Table("id", "source", "field", "reason", "record")
    for r in records:
        table.add_row(
            str(r.id), r.source, r.field or "", r.reason, json.dumps(r.record, default=str)[:120]
        )
    console.print(table)
    console.print(f"{len(records)} record(s) shown")


@app.command()
def get(
    features: Annotated[
        list[str], typer.Argument(help="'view:feature' references, or a service name")
    ],
    entity: Annotated[list[str], typer.Option("--entity", "-e", help="key=value, repeatable")],
    repo: Repo = Path("."),
    now: Annotated[str | None, typer.Option(help="Read as of this time (ISO 8601)")] = None,
    max_age: Annotated[
        float | None, typer.Option(help="Values older than this (s) are stale")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False,
) -> None:
    """Read online features with each value's status and age (and the fallback that served
    it, if one did)."""
    rows = []
    for item in entity:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--entity {item!r}: use key=value")
        rows.append({key: value})
    selection: Any = features[0] if len(features) == 1 and ":" not in features[0] else features
    response = _store(repo).get_online_features(
        selection, rows, now=_when(now, "--now"), max_age_s=max_age
    )
    if as_json:
        print(json.dumps({"entities": rows, "features": response.rows()}, default=str, indent=2))
        return
    table = Table("entity", "feature", "value", "status", "age (s)")
    for row, values in zip(rows, response.rows(), strict=True):
        for name, cell in values.items():
            age = "" if cell["age_s"] is None else f"{cell['age_s']:.1f}"
            status = cell["status"]
            if cell.get("fallback"):
                status += f" ({cell['fallback']})"
            table.add_row(
                json.dumps(row), name, json.dumps(cell["value"], default=str), status, age
            )
    console.print(table)


@app.command()
def materialize(
    repo: Repo = Path("."),
    start: Annotated[str | None, typer.Option(help="Earliest event time (ISO 8601)")] = None,
    end: Annotated[
        str | None, typer.Option(help="End of event times, exclusive (ISO 8601)")
    ] = None,
    view: Annotated[list[str] | None, typer.Option(help="Only these views")] = None,
) -> None:
    """Rebuild online state from the event log with the batch runtime (a backfill)."""
    reports = _store(repo).materialize(_when(start, "--start"), _when(end, "--end"), view)
    for r in reports:
        console.print(f"{r.view} v{r.version}: {r.entities:,} entities materialized")


@app.command()
def parity(
    repo: Repo = Path("."),
    checks: Annotated[int, typer.Option(help="Check times sampled per source")] = 50,
    entities: Annotated[int, typer.Option(help="Entities read at each check time")] = 25,
    seed: Annotated[int, typer.Option(help="Sampling seed")] = 0,
) -> None:
    """Replay the log, compare online with offline as-served values (views keyed by golden
    ids or relations: the live store now); exit 1 on any mismatch."""
    store = _store(repo)
    report = store.check_parity(checks, entities, seed)
    _print_parity(report)
    if not report.ok:
        raise typer.Exit(1)


def _print_parity(report: Any) -> None:
    table = Table("feature", "checks", "mismatches", "example (key, t, online, offline)")
    for f in report.features.values():
        example = "" if not f.examples else str(f.examples[0])[:80]
        style = "red" if f.mismatches else "green"
        table.add_row(f.feature, f"{f.checks:,}", f"[{style}]{f.mismatches:,}[/{style}]", example)
    console.print(table)
    console.print(
        f"{report.events_replayed:,} events replayed, {report.checks:,} values compared, "
        f"{report.mismatches:,} mismatches: {'PARITY OK' if report.ok else 'PARITY FAILED'}"
    )


@app.command()
def generate(
    out: Annotated[Path, typer.Option(help="Output folder")] = Path("synthetic_crm"),
    scale: Annotated[int, typer.Option(help="Number of real people")] = 1000,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same files)")] = 0,
) -> None:
    """Write a synthetic multi-source CRM data set with ground truth."""
    from crmfs.synthetic import generate_crm

    result = generate_crm(out, scale=scale, seed=seed, progress=lambda m: err.print(m))
    table = Table("table", "rows", "file")
    for name, path in result.files.items():
        table.add_row(name, f"{result.counts.get(name, 0):,}", str(path))
    console.print(table)


@app.command()
def demo(
    folder: Annotated[Path, typer.Option(help="Where the demo project is created")] = Path(
        "demo_project"
    ),
    scale: Annotated[int, typer.Option(help="People in the synthetic CRM")] = 2000,
    seed: Annotated[int, typer.Option(help="Random seed")] = 7,
) -> None:
    """End to end on the embedded default: generate, apply, ingest, read, train, parity."""
    from crmfs.demo import run_demo

    ok = run_demo(folder, scale=scale, seed=seed, console=console)
    if not ok:
        raise typer.Exit(1)


def main() -> None:
    try:
        app()
    except CrmfsError as exc:
        err.print(f"[red]error:[/red] {exc}")
        sys.exit(2)
