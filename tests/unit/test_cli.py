"""Every `flexfleet` command answers --help with a description, so a newcomer can find their way."""

import click
import pytest
import typer
from typer.testing import CliRunner

from services.cli import app

runner = CliRunner()


def command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = []
    for name, command in group.commands.items():
        paths.append(prefix + (name,))
        if isinstance(command, click.Group):
            paths += command_paths(command, prefix + (name,))
    return paths


COMMANDS = command_paths(typer.main.get_command(app))


def test_the_main_commands_are_there():
    names = {path[0] for path in COMMANDS}
    assert {"demo", "ingest", "up", "down", "simulate"} <= names


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_help(path):
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    body = result.output.split("Usage:", 1)[1]
    assert len(body.strip().splitlines()) >= 3, f"{' '.join(path)} --help says almost nothing"
