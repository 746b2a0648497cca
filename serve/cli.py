"""The `specialist` console script. Imports stay light: each command imports its room when it runs."""

from __future__ import annotations

import os

import typer

from serve.commands import finetune as finetune_cmds
from serve.commands import kb as kb_cmds
from serve.commands import service as service_cmds
from serve.commands import store as store_cmds

# OpenMP threads sleep instead of spinning when idle: torch and llama.cpp share libgomp, which reads this
# once when it loads, so it is set before any command imports either (a spinning pool stalls a 2-core box).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

app = typer.Typer(help="specialist: a support agent that knows one business well.", no_args_is_help=True)


@app.callback()
def root() -> None:
    """specialist: a support agent that knows one business well and never makes things up."""


kb_cmds.register(app)
finetune_cmds.register(app)
store_cmds.register(app)
service_cmds.register(app)


@app.command()
def version() -> None:
    """Print the installed version."""
    from specialist import __version__

    typer.echo(__version__)


def main() -> None:
    """Entry point of the console script."""
    app()
