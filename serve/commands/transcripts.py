"""CLI of live transcripts: `transcripts export` writes the service's conversations as training data."""

from __future__ import annotations

import json
from pathlib import Path

import typer

transcripts_app = typer.Typer(help="Live conversations as training transcripts.", no_args_is_help=True)


@transcripts_app.command("export")
def export(
    out: Path = typer.Argument(..., help="The JSONL file to write."),
    since: str | None = typer.Option(None, help="Only conversations updated on or after this ISO date."),
    flagged: bool = typer.Option(False, "--flagged", help="Only flagged conversations."),
    reviewed: bool = typer.Option(False, "--reviewed", help="Only conversations with a reviewed step."),
    pii: str = typer.Option("placeholder", help="placeholder ([EMAIL_1]) or surrogate (consistent fakes)."),
    key: str = typer.Option(
        ..., envvar="SPECIALIST_KEY", help="An engineer's API key (exports need the engineer role)."
    ),
) -> None:
    """Write the conversations (docs/training.md's format) with ratings, outcome and corrections, scrubbed."""
    from serve.auth import KeyStore, Role
    from serve.context import load_settings
    from serve.conversations import ConversationStore
    from serve.feedback import FeedbackStore
    from serve.state import StateDB
    from serve.transcript_export import checkpoint_history, export_transcripts, parse_since
    from specialist.errors import Forbidden, SpecialistError

    settings = load_settings()
    db = StateDB(settings.serve.state_path)
    try:
        who = KeyStore(db).verify(key.strip())
        if who.role is not Role.engineer:
            raise Forbidden(f"exports are for engineers; this key's role is {who.role.value}")
        with checkpoint_history(settings.agent) as history:
            report = export_transcripts(
                conversations=ConversationStore(db),
                feedback=FeedbackStore(db),
                history=history,
                out=out,
                since=parse_since(since),
                flagged=flagged,
                reviewed=reviewed,
                pii_mode=pii,
            )
    except SpecialistError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        db.close()
    typer.echo(json.dumps(report.to_dict()))


def register(app: typer.Typer) -> None:
    """Attach this area's commands to the root app."""
    app.add_typer(transcripts_app, name="transcripts")
