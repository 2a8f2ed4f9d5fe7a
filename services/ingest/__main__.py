"""`python -m services.ingest`: the ingest worker alone, without importing the rest of the CLI."""

from services.ingest.cli import app

app()
