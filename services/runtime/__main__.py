"""`python -m services.runtime up|down|status`: the runtime commands without the rest of the CLI."""

from services.runtime.cli import app

app()
