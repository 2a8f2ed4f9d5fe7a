"""`python -m services.forecaster run|show|replay|backtest`: the forecaster's commands alone,
without importing the rest of the CLI (as `python -m services.ingest`)."""

from services.forecaster.cli import app

app()
