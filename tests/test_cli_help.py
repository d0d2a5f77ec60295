"""Every `--help` shows every default: argparse's, and the settings' effective ones, no secrets."""

from __future__ import annotations

import argparse
import re
from typing import TYPE_CHECKING

from driftsnap import cli
from tests import test_cli

if TYPE_CHECKING:
    import pytest

# A made-up credential: user, password, path and query are what the help must not show.
SECRET_RPC = "https://operator:hunter2@rpc.example.com/v2/KEY-1234?api-key=KEY-5678"  # noqa: S105


def _parsers() -> dict[str, argparse.ArgumentParser]:
    """`driftsnap` and every subcommand, nested ones included (e.g. `driftsnap db url`)."""
    found: dict[str, argparse.ArgumentParser] = {}
    stack = [("driftsnap", cli.build_parser())]
    while stack:
        name, parser = stack.pop()
        found[name] = parser
        for action in parser._actions:  # argparse keeps its subparsers only here
            if isinstance(action, argparse._SubParsersAction):
                stack += [(f"{name} {n}", p) for n, p in action.choices.items()]
    return found


def _help_of(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The help line of ``action`` as ``--help`` prints it, on one line."""
    text = parser._get_formatter()._expand_help(action) if action.help else ""
    return " ".join(text.split())


def _options() -> list[tuple[str, argparse.ArgumentParser, argparse.Action]]:
    return [
        (name, parser, action)
        for name, parser in _parsers().items()
        for action in parser._actions
        if action.option_strings and action.nargs != 0  # flags without a value have no default
    ]


def test_every_option_with_a_default_shows_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """An option with an argparse default ends its help with "(default: VALUE)", once."""
    for variable in ("DRIFTSNAP_RPC_URL", "DRIFTSNAP_CADENCE", "DRIFTSNAP_METRICS_PORT"):
        monkeypatch.delenv(variable, raising=False)
    checked = 0
    for name, parser, action in _options():
        text = _help_of(parser, action)
        flag = f"{name} {action.option_strings[-1]}"
        if action.default not in (None, argparse.SUPPRESS, []):
            assert f"(default: {action.default})" in text, flag
            checked += 1
        # Said once: no hand-written "default 5s" left next to the formatter's.
        assert text.count("default") - text.count("(default: default)") <= 1, f"{flag}: {text}"
    assert checked >= 20  # simnet's, --format's, --top, --role, demo's ...


def test_options_falling_back_to_a_setting_show_its_value_and_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Flags whose default is a setting (argparse's is None, so the environment applies) show
    the setting's effective value and its DRIFTSNAP_ variable."""
    for variable in ("DRIFTSNAP_RPC_URL", "DRIFTSNAP_CADENCE", "DRIFTSNAP_METRICS_PORT"):
        monkeypatch.delenv(variable, raising=False)
    backed = [(n, p, a) for n, p, a in _options() if getattr(a, "setting", None) is not None]
    assert {f"{n} {a.option_strings[-1]}" for n, _, a in backed} >= {
        "driftsnap --program",
        "driftsnap --log-level",
        "driftsnap --log-format",
        "driftsnap run --rpc-url",
        "driftsnap run --market",
        "driftsnap run --cadence",
        "driftsnap run --clock",
        "driftsnap run --metrics-port",
        "driftsnap healthcheck --url",
        "driftsnap books --rpc-url",
        "driftsnap fills check --rpc-url",
        "driftsnap fills finalize --rpc-url",
        "driftsnap close-week --min-coverage",
        "driftsnap score-book --method",
    }
    for name, parser, action in backed:
        text = _help_of(parser, action)
        assert re.search(r"\(default: .+DRIFTSNAP_[A-Z_]+\)$", text), f"{name}: {text}"
    by_flag = {f"{n} {a.option_strings[-1]}": _help_of(p, a) for n, p, a in backed}
    assert "(default: 60s; env DRIFTSNAP_CADENCE)" in by_flag["driftsnap run --cadence"]
    assert "(default: 9108; env DRIFTSNAP_METRICS_PORT)" in by_flag["driftsnap run --metrics-port"]
    assert "(default: none; env DRIFTSNAP_RPC_URL)" in by_flag["driftsnap run --rpc-url"]
    assert "(default: http://127.0.0.1:9108;" in by_flag["driftsnap healthcheck --url"]
    assert (
        "(default: 0.95; env DRIFTSNAP_CLOSE_MIN_COVERAGE)"
        in (by_flag["driftsnap close-week --min-coverage"])
    )


def test_a_default_from_the_environment_is_its_value_without_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With DRIFTSNAP_RPC_URL and DRIFTSNAP_CADENCE set, --help shows them as the defaults,
    the RPC URL as scheme://host only: no user, password, path or query (API keys)."""
    monkeypatch.setenv("DRIFTSNAP_RPC_URL", SECRET_RPC)
    monkeypatch.setenv("DRIFTSNAP_CADENCE", "5m")
    monkeypatch.setenv("DRIFTSNAP_METRICS_PORT", "9200")
    texts = {name: " ".join(p.format_help().split()) for name, p in _parsers().items()}
    run = texts["driftsnap run"]
    assert "(default: https://rpc.example.com/…, from DRIFTSNAP_RPC_URL)" in run
    assert "(default: 300s, from DRIFTSNAP_CADENCE)" in run
    assert "(default: 9200, from DRIFTSNAP_METRICS_PORT)" in run
    assert "http://127.0.0.1:9200" in texts["driftsnap healthcheck"]
    for name, text in texts.items():
        for secret in ("hunter2", "operator", "KEY-1234", "KEY-5678", "/v2"):
            assert secret not in text, (name, secret)


def test_the_installed_command_prints_the_defaults_the_issue_names() -> None:
    """`driftsnap run|simnet|score-book --help`, as a user runs them, name cadence, RPC URL,
    metrics port, simnet's port and seed, and --format's default."""
    run = " ".join(test_cli.run("run", "--help").stdout.split())
    assert "--cadence DURATION 60s, 5m... dividing the week (default: 60s;" in run
    assert "(default: 9108; env DRIFTSNAP_METRICS_PORT)" in run
    assert "DRIFTSNAP_RPC_URL)" in run
    simnet = " ".join(test_cli.run("simnet", "--help").stdout.split())
    assert "port for HTTP and websocket (default: 8899)" in simnet
    assert "the simulation is a function of it (default: 0)" in simnet
    score = " ".join(test_cli.run("score-book", "--help").stdout.split())
    assert "output format (default: table)" in score
