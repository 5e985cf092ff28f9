"""``crmfs serve`` (the HTTP feature server) and ``crmfs keys`` (its API keys)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from crmfs.cli.times import parse_time
from crmfs.errors import MissingExtra

keys_app = typer.Typer(help="API keys of the feature server (stored hashed).", no_args_is_help=True)
console = Console()
Repo = Annotated[Path, typer.Option("--repo", "-r", help="Project folder (holds crmfs.yaml)")]


def serve(
    repo: Annotated[Path, typer.Argument(help="Project folder (holds crmfs.yaml)")] = Path("."),
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes")] = 1,
    insecure: Annotated[
        bool, typer.Option(help="Serve beyond loopback without API keys (everyone is admin)")
    ] = False,
    access_log: Annotated[bool, typer.Option(help="Log every request")] = False,
    at: Annotated[
        str | None,
        typer.Option(help="Serve as of this ISO time (replays of a past log, benchmarks)"),
    ] = None,
) -> None:
    """Serve features over HTTP (OpenAPI document at /docs and /openapi.json)."""
    try:
        from crmfs.api.runner import serve as run
    except ImportError as exc:
        raise MissingExtra(exc.name or "fastapi", "server") from exc
    run(
        repo,
        host,
        port,
        workers,
        insecure=insecure,
        access_log=access_log,
        at=parse_time(at, "--at"),
    )


def _keys(repo: Path):  # type: ignore[no-untyped-def]
    from crmfs.api.settings import ServerSettings
    from crmfs.config import ProjectConfig
    from crmfs.serving.access import KEYS_FILE, ApiKeys

    config = ProjectConfig.load(repo)
    return ApiKeys(config.data_dir / KEYS_FILE, ServerSettings.of(config.server).roles)


@keys_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="Who the key is for (a model, a service)")],
    role: Annotated[list[str], typer.Option("--role", help="A role (repeat for several)")],
    repo: Repo = Path("."),
) -> None:
    """Create a key; it is printed once and only its hash is stored."""
    key = _keys(repo).add(name, role)
    console.print(f"API key for {name!r} (roles {', '.join(role)}); it is not shown again:")
    print(key)


@keys_app.command("list")
def list_keys(repo: Repo = Path(".")) -> None:
    """Keys by name, with their roles (never the keys)."""
    table = Table("name", "roles", "created")
    for record in _keys(repo).records():
        table.add_row(record.name, ", ".join(record.roles), record.created_at)
    console.print(table)


@keys_app.command("revoke")
def revoke(name: str, repo: Repo = Path(".")) -> None:
    """Delete a key; running servers refuse it within about a second."""
    _keys(repo).revoke(name)
    console.print(f"revoked {name!r}")
