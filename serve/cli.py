"""The `specialist` console script. Imports stay light: each command imports its room when it runs."""

from __future__ import annotations

import typer

from serve.commands import finetune as finetune_cmds
from serve.commands import kb as kb_cmds
from serve.commands import service as service_cmds
from serve.commands import store as store_cmds
from serve.commands import transcripts as transcripts_cmds
from specialist.openmp import configure_openmp

# How idle OpenMP threads wait: torch and llama.cpp share libgomp, which reads this once when it loads, so it
# is set before any command imports either.
configure_openmp()

app = typer.Typer(help="specialist: a support agent that knows one business well.", no_args_is_help=True)


@app.callback()
def root() -> None:
    """specialist: a support agent that knows one business well and never makes things up."""


kb_cmds.register(app)
finetune_cmds.register(app)
store_cmds.register(app)
service_cmds.register(app)
transcripts_cmds.register(app)


@app.command()
def version() -> None:
    """Print the installed version."""
    from specialist import __version__

    typer.echo(__version__)


def main() -> None:
    """Entry point of the console script."""
    app()
