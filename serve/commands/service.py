"""CLI commands of the service: `specialist serve` and `specialist keys create|list|revoke`."""

from __future__ import annotations

import typer

keys_app = typer.Typer(help="API keys (stored hashed; a key is shown once).", no_args_is_help=True)


def serve(
    host: str | None = typer.Option(None, help="Bind address (default: settings.serve.host)."),
    port: int | None = typer.Option(None, help="Port (default: settings.serve.port)."),
    model_backend: str | None = typer.Option(
        None, "--model", help="Model backend: local, openai, scripted (default: settings.model.backend)."
    ),
    demo_key: bool = typer.Option(
        False,
        "--demo-key",
        help="Create a key for a demo customer and print the chat page's address with it.",
    ),
    workers: int = typer.Option(1, min=1, help="Uvicorn worker processes (needs server backends if > 1)."),
) -> None:
    """Start the API and web pages on the configured backends (embedded defaults: Qdrant edge, SQLite)."""
    import uvicorn

    from serve.app import create_app
    from serve.context import load_settings

    settings = load_settings()
    if host is not None:
        settings.serve.host = host
    if port is not None:
        settings.serve.port = port
    if model_backend is not None:
        settings.model.backend = model_backend
    if demo_key:
        _print_demo_address(settings)
    if workers > 1:
        typer.echo(
            "error: several workers need a shared knowledge base and state; run replicas instead", err=True
        )
        raise typer.Exit(2)
    app = create_app(settings, advertise=True)
    typer.echo(
        f"specialist: API and web pages at http://{settings.serve.host}:{settings.serve.port}/ (docs: /docs)"
    )
    uvicorn.run(app, host=settings.serve.host, port=settings.serve.port, log_config=None, access_log=False)


def _print_demo_address(settings: object) -> None:
    from serve.auth import KeyStore, Role
    from serve.settings import Settings
    from serve.state import StateDB

    assert isinstance(settings, Settings)
    customer_id = settings.serve.demo_customer_id or _demo_customer(settings)
    if customer_id is None:
        typer.echo("no demo customer: run `specialist store seed` first", err=True)
        return
    keys = KeyStore(StateDB(settings.serve.state_path))
    issued = keys.create(role=Role.customer, customer_id=customer_id, name="demo")
    engineer = keys.create(role=Role.engineer, name="demo")
    owner = keys.create(role=Role.content_owner, name="demo")
    base = f"http://{settings.serve.host}:{settings.serve.port}"
    typer.echo(f"chat as demo customer {customer_id}: {base}/chat#key={issued.secret}")
    typer.echo(f"knowledge base (content owner):   {base}/kb#key={owner.secret}")
    typer.echo(f"models (engineer):                {base}/models#key={engineer.secret}")


def _demo_customer(settings: object) -> str | None:
    """The first customer (by id) with a pending and a delivered order, else the first customer."""
    from pathlib import Path

    from serve.settings import Settings

    assert isinstance(settings, Settings)
    path = Path(settings.agent.store_path)
    if not path.exists():
        return None
    from agent.store.database import RetailDatabase

    db = RetailDatabase(path)
    try:
        # a customer with a pending and a delivered order, so the tour can cancel, return or exchange
        rows = db.query(
            "SELECT user_id FROM orders GROUP BY user_id HAVING SUM(status = 'pending') > 0 "
            "AND SUM(status = 'delivered') > 0 ORDER BY user_id LIMIT 1"
        ) or db.query("SELECT user_id FROM users ORDER BY user_id LIMIT 1")
    finally:
        db.close()
    return str(rows[0][0]) if rows else None


@keys_app.command("create")
def create_key(
    role: str = typer.Option(..., help="customer, content_owner or engineer"),
    customer_id: str | None = typer.Option(None, help="The customer a customer key is bound to."),
    name: str = typer.Option("", help="A label for the key."),
) -> None:
    """Create an API key and print it once (only its hash is stored)."""
    from serve.auth import KeyStore
    from serve.context import load_settings
    from serve.state import StateDB
    from specialist.errors import InvalidInput

    settings = load_settings()
    try:
        issued = KeyStore(StateDB(settings.serve.state_path)).create(
            role=role, customer_id=customer_id, name=name
        )
    except InvalidInput as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(issued.secret)
    bound = f" for customer {customer_id}" if customer_id else ""
    typer.echo(
        f"key {issued.principal.key_id}: role {role}{bound}; store it now, it is not shown again", err=True
    )


@keys_app.command("list")
def list_keys() -> None:
    """List keys (ids, roles, customers; never the secrets)."""
    from serve.auth import KeyStore
    from serve.context import load_settings
    from serve.state import StateDB

    settings = load_settings()
    for key in KeyStore(StateDB(settings.serve.state_path)).list():
        state = "revoked" if key["revoked_at"] else "active"
        typer.echo(f"{key['id']}  {key['role']:<13}  {key['customer_id'] or '-':<24}  {state}  {key['name']}")


@keys_app.command("revoke")
def revoke_key(key_id: str = typer.Argument(..., help="The key's id (from `keys list`).")) -> None:
    """Revoke a key."""
    from serve.auth import KeyStore
    from serve.context import load_settings
    from serve.state import StateDB
    from specialist.errors import NotFound

    settings = load_settings()
    try:
        KeyStore(StateDB(settings.serve.state_path)).revoke(key_id)
    except NotFound as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"revoked {key_id}")


def register(app: typer.Typer) -> None:
    """Attach this area's commands to the root app."""
    app.command("serve")(serve)
    app.add_typer(keys_app, name="keys")
