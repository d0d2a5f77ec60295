"""Settings and the program file: shipped defaults, user overrides, effective dates, bad config."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from driftsnap import calendar, config
from driftsnap.errors import ConfigError
from tests.books import key

if TYPE_CHECKING:
    from pathlib import Path

W = calendar.Week.parse


def test_shipped_program_has_the_august_2023_pools() -> None:
    """The shipped file pays SOL/BTC/ETH 500, SUI/ARB 0 and 1500 volume, by drift-2023-08, to
    registered makers only (the program qualifies makers on application), none listed."""
    program = config.load_program()
    terms = program.terms(W("2026-W47"))
    assert program.method == "drift-2023-08"
    assert dict(terms.score_pools) == {
        "SOL-PERP": 500_000_000,
        "BTC-PERP": 500_000_000,
        "ETH-PERP": 500_000_000,
        "SUI-PERP": 0,
        "ARB-PERP": 0,
    }
    assert terms.volume_pool == 1_500_000_000
    assert program.participants == "registered"
    assert terms.participants.registered == frozenset()  # `driftsnap makers add` registers them
    assert not terms.paused


def test_weeks_before_the_program_started_pay_nothing() -> None:
    """A week before 14 Aug 2023 has no pools and says the program had not started."""
    terms = config.load_program().terms(W("2023-W32"))
    assert terms.paused
    assert "before the program started" in terms.pause_reason
    assert terms.volume_pool == 0


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "program.toml"
    path.write_text(text)
    return path


def test_user_file_overrides_pools_with_effective_from_dates(tmp_path: Path) -> None:
    """Pools change on their effective Monday: SOL 500 until 2024-W01, 250 from then on."""
    path = _write(
        tmp_path,
        """
        [[score_pool]]
        market = "SOL-PERP"
        usdc = 500
        effective_from = 2023-08-14

        [[score_pool]]
        market = "SOL-PERP"
        usdc = "250.5"
        effective_from = 2024-01-01

        [[volume_pool]]
        usdc = 1500
        effective_from = 2023-08-14
        """,
    )
    program = config.load_program(path)
    assert program.score_pools(W("2023-W52")) == {"SOL-PERP": 500_000_000}
    assert program.score_pools(W("2024-W01")) == {"SOL-PERP": 250_500_000}
    assert program.method == "drift-2023-08"  # untouched keys come from the shipped file


def test_paused_weeks_participants_and_forfeits_apply_to_their_weeks(tmp_path: Path) -> None:
    """Registered participants count within their weeks, forfeits and pauses only in theirs."""
    path = _write(
        tmp_path,
        f"""
        participants = "registered"

        [[participant]]
        authority = "{key("a")}"

        [[participant]]
        authority = "{key("b")}"
        from_week = "2024-W10"

        [[forfeit]]
        authority = "{key("a")}"
        weeks = ["2024-W11"]
        reason = "self-matching observed"

        [[paused]]
        week = "2024-W12"
        reason = "program paused"
        """,
    )
    program = config.load_program(path)
    w9, w11, w12 = (
        program.terms(W("2024-W09")),
        program.terms(W("2024-W11")),
        program.terms(W("2024-W12")),
    )
    assert w9.participants.registered == frozenset({key("a")})
    assert w11.participants.includes(key("b"))
    assert not w11.participants.includes(key("a"))
    assert w12.paused
    assert w12.pause_reason == "program paused"
    assert not w11.paused


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("method = 'fancy'", "method: unknown scoring method 'fancy'"),
        ("starts = 2023-08-15", "starts: 2023-08-15 is not a Monday"),
        (
            "[[score_pool]]\nmarket='SOL-PERP'\nusdc=-5\neffective_from=2023-08-14",
            "score_pool[0].usdc: must be >= 0 with at most 6 decimals (got -5)",
        ),
        (
            "[[score_pool]]\nmarket='SOL-PERP'\nusdc='1.0000001'\neffective_from=2023-08-14",
            "score_pool[0].usdc: must be >= 0 with at most 6 decimals",
        ),
        (
            "[[score_pool]]\nmarket='SOL-PERP'\nusdc=1.5\neffective_from=2023-08-14",
            "score_pool[0].usdc: must be an integer or a decimal string",
        ),
        (
            "[[score_pool]]\nmarket='SOL-PERP'\nusd=1\neffective_from=2023-08-14",
            "score_pool[0].usdc: missing required field",
        ),
        ("participants = 'some'", "participants: input should be 'all' or 'registered'"),
        ("[[paused]]\nweek='2024-W60'\nreason='x'", "paused[0].week: no such ISO week"),
        ("[[participant]]\nauthority='nope'", "participant[0].authority: not a base58 public key"),
        ("format = 2", "format: this driftsnap reads program format 1, got 2"),
        ("colour = 'red'", "colour: extra inputs are not permitted"),
        ("method = ", "not valid TOML"),
    ],
)
def test_bad_program_files_fail_with_one_line_naming_the_key(
    tmp_path: Path, text: str, message: str
) -> None:
    """Each mistake in a program file is reported as one line with the file and the key."""
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        config.load_program(path)
    assert str(err.value).startswith(str(path))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_program_file_is_a_config_error(tmp_path: Path) -> None:
    """A --program path that does not exist names the path and the reason."""
    with pytest.raises(ConfigError, match="No such file or directory"):
        config.load_program(tmp_path / "absent.toml")


def test_settings_come_from_the_environment_and_are_frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    """DRIFTSNAP_* variables fill Settings; the object cannot be changed afterwards."""
    monkeypatch.setenv("DRIFTSNAP_LOG_LEVEL", "debug")
    settings = config.load_settings()
    assert settings.log_level == "debug"
    with pytest.raises(ValueError, match="frozen"):
        settings.log_level = "info"  # type: ignore[misc]


def test_bad_setting_names_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad environment value is one line naming DRIFTSNAP_LOG_LEVEL, a bad flag its --flag."""
    monkeypatch.setenv("DRIFTSNAP_LOG_LEVEL", "loud")
    with pytest.raises(ConfigError, match=r"^config error: DRIFTSNAP_LOG_LEVEL: input should be"):
        config.load_settings()
    monkeypatch.delenv("DRIFTSNAP_LOG_LEVEL")
    with pytest.raises(ConfigError, match=r"^config error: --log-format: input should be"):
        config.load_settings(log_format="xml")


def test_detail_methods_default_to_what_the_report_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset: the program's method and the uptime method; a list: those of the computed methods;
    "none": no method's; an unknown name is one line naming the variable."""

    def names(settings: config.Settings) -> list[str]:
        return [m.name for m in settings.detail_presets("drift-mm-scoring")]

    assert names(config.load_settings()) == ["drift-2023-08", "drift-mm-scoring"]
    monkeypatch.setenv("DRIFTSNAP_DETAIL_METHODS", "drift-points-2024-01")
    assert names(config.load_settings()) == ["drift-points-2024-01"]
    monkeypatch.setenv("DRIFTSNAP_METHODS", "drift-2023-08")
    assert names(config.load_settings()) == []  # not computed, so nothing to store
    monkeypatch.setenv("DRIFTSNAP_DETAIL_METHODS", "none")
    monkeypatch.delenv("DRIFTSNAP_METHODS")
    assert names(config.load_settings()) == []
    monkeypatch.setenv("DRIFTSNAP_DETAIL_METHODS", "drift-2099")
    with pytest.raises(ConfigError, match=r"^config error: DRIFTSNAP_DETAIL_METHODS: .*drift-2099"):
        config.load_settings()
