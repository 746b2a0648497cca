"""CLI commands of the store area: seed the demo company's store or import one in the retail JSON format."""

from __future__ import annotations

from pathlib import Path

import typer

store_app = typer.Typer(help="The demo company's CRM/billing store (SQLite).", no_args_is_help=True)


@store_app.command("seed")
def seed(
    seed: int = typer.Option(7, help="Random seed of the generator."),
    users: int = typer.Option(60, min=1, help="How many customers."),
    orders: int = typer.Option(150, min=1, help="How many orders."),
    export: Path | None = typer.Option(None, help="Also write the data as JSON files to this folder."),
) -> None:
    """Fill the store with seeded demo data (replaces users, orders and products)."""
    from agent.store.database import RetailDatabase, write_json_dir
    from agent.store.seed import generate_demo_data
    from serve.context import load_settings

    settings = load_settings()
    data = generate_demo_data(seed, n_users=users, n_orders=orders)
    db = RetailDatabase(settings.agent.store_path)
    counts = db.replace_all(data)
    db.close()
    if export is not None:
        write_json_dir(data, export)
    typer.echo(f"seeded {settings.agent.store_path}: {counts}")


@store_app.command("import")
def import_dir(
    directory: Path = typer.Argument(..., help="Folder with users/orders/products .json(.gz)"),
) -> None:
    """Load a store in the retail JSON format (replaces users, orders and products)."""
    from agent.store.database import RetailDatabase, load_json_dir
    from serve.context import load_settings
    from specialist.errors import InvalidInput

    settings = load_settings()
    try:
        data = load_json_dir(directory)
    except InvalidInput as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    db = RetailDatabase(settings.agent.store_path)
    counts = db.replace_all(data)
    db.close()
    typer.echo(f"imported {directory} into {settings.agent.store_path}: {counts}")


@store_app.command("export")
def export_dir(
    directory: Path = typer.Argument(..., help="Folder to write users/orders/products .json"),
) -> None:
    """Write the store in the retail JSON format."""
    from agent.store.database import RetailDatabase, write_json_dir
    from serve.context import load_settings

    settings = load_settings()
    db = RetailDatabase(settings.agent.store_path)
    write_json_dir(db.export(), directory)
    db.close()
    typer.echo(f"exported {settings.agent.store_path} to {directory}")


def register(app: typer.Typer) -> None:
    """Attach this area's commands to the root app."""
    app.add_typer(store_app, name="store")
