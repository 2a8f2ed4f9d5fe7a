"""`python -m services.ingest`: the ingest worker alone, without importing the rest of the CLI."""

import typer

from services.ingest.cli import ingest

typer.run(ingest)
