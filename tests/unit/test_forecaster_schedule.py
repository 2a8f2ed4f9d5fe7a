"""The forecaster service's schedule, settings and commands, without servers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from flexfleet.domain import DomainError
from services.cli import app
from services.forecaster.service import ServiceConfig, next_scheduled

runner = CliRunner()


def at(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, 20, hour, minute, tzinfo=UTC)


def test_the_schedule_is_a_grid_from_the_epoch():
    assert next_scheduled(at(10), timedelta(hours=1)) == at(11)
    assert next_scheduled(at(10, 30), timedelta(hours=1)) == at(11)   # a forecast on new data keeps the grid
    assert next_scheduled(at(10, 45), timedelta(minutes=15)) == at(11)
    assert next_scheduled(at(10, 30), timedelta(hours=6)) == at(12)


@pytest.mark.parametrize("field, value, reason", [
    ("every", timedelta(minutes=20), "whole number of 15-minute MTUs"),
    ("every", timedelta(days=2), "up to a day"),
    ("retrain_every", timedelta(0), "must be positive"),
    ("history", timedelta(days=7), "more than the 10 days"),
    ("poll_s", 0, "must be positive"),
])
def test_settings_are_checked_and_the_error_names_the_field(field, value, reason):
    with pytest.raises(DomainError, match=reason) as error:
        ServiceConfig("postgresql://x/y", "k:9092", **{field: value})
    assert error.value.field == field


@pytest.mark.parametrize("command", [["run"], ["show"], ["replay"]])
def test_every_command_has_help(command):
    result = runner.invoke(app, ["forecast", *command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_run_refuses_a_bad_schedule_naming_the_option(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/none")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    result = runner.invoke(app, ["forecast", "run", "--once", "--every", "7min"])
    assert result.exit_code == 2 and "--every" in result.output and "15-minute" in result.output
    result = runner.invoke(app, ["forecast", "run", "--once", "--retrain-every", "daily"])
    assert result.exit_code == 2 and "--retrain-every" in result.output and "not a duration" in result.output
    result = runner.invoke(app, ["forecast", "run", "--once", "--zone", "XX"])
    assert result.exit_code == 2 and "--zone" in result.output and "unknown bidding zone" in result.output


def test_the_commands_need_their_servers(monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    for command in (["run", "--once"], ["show"], ["replay", "x"]):
        result = runner.invoke(app, ["forecast", *command])
        assert result.exit_code == 2 and "DATABASE_URL" in result.output, command
