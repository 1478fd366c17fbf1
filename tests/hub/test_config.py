"""Configuration layering of `certhub serve` on its real parser: CLI > CERTHUB_* > file >
defaults, typed and checked values, errors naming the setting, secrets masked; and
`certhub config show` printing it."""

from __future__ import annotations

import argparse
import json
import logging
import tomllib
from pathlib import Path

import pytest

from certhub.hub.cli.main import build_parser, main
from certhub.hub.config import ConfigError, Setting, apply_config, mask_secret


def _serve(
    argv: list[str], environ: dict[str, str]
) -> tuple[argparse.Namespace, dict[str, Setting]]:
    args = build_parser().parse_args(["serve", *argv])
    settings = apply_config(args, environ=environ)
    return args, {s.name: s for s in settings}


def test_precedence_is_command_line_then_environment_then_file_then_defaults(
    tmp_path: Path,
) -> None:
    config = tmp_path / "hub.toml"
    config.write_text(
        'address = "0.0.0.0:6000"\nworkers = 3\nmetrics-port = 9464\nredis = "redis://file"\n'
        "reflection = false\n"
    )
    env = {"CERTHUB_WORKERS": "5", "CERTHUB_REDIS": "redis://env", "CERTHUB_CONFIG": str(config)}
    args, settings = _serve(["--redis", "redis://cli"], env)
    assert args.redis == "redis://cli"
    assert settings["redis"].source == "command line"
    assert args.workers == 5
    assert settings["workers"].source == "environment CERTHUB_WORKERS"
    assert args.address == "0.0.0.0:6000"
    assert args.metrics_port == 9464
    assert args.reflection is False
    assert settings["metrics_port"].source == f"file {config}"
    assert args.cache_prefix == "certhub"
    assert settings["cache_prefix"].source == "default"
    assert args.data_dir == Path("certhub-data")  # typed like the option
    assert isinstance(args.workers, int)


def test_switches_take_booleans_and_the_setting_is_the_destination() -> None:
    args, _ = _serve([], {"CERTHUB_REFLECTION": "false", "CERTHUB_NO_CACHE": "yes"})
    assert args.reflection is False
    assert args.no_cache is True
    args, _ = _serve(["--no-reflection"], {"CERTHUB_REFLECTION": "true"})
    assert args.reflection is False  # the command line wins
    with pytest.raises(ConfigError, match="CERTHUB_INSECURE: 'maybe' is not a boolean"):
        _serve([], {"CERTHUB_INSECURE": "maybe"})


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("wrokers = 2\n", "unknown setting 'wrokers'"),
        ("workers = 'two'\n", "workers must be a number, not the string 'two'"),
        # Quoted numbers are text in TOML: refused, not converted (issue 15, item 7).
        ('workers = "2"\n', "workers must be a number, not the string '2'"),
        ("workers = 2.5\n", "workers must be a whole number, not 2.5"),
        ("address = 50051\n", "address must be a string, not 50051"),
        ("log_format = 'xml'\n", "'xml' is not one of json, text"),
        ("insecure = 'yes'\n", "insecure must be true or false"),
        ("workers = [\n", "not valid TOML"),
    ],
)
def test_a_bad_file_is_refused_naming_the_setting(
    tmp_path: Path, content: str, message: str
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(content)
    with pytest.raises(ConfigError, match=message) as caught:
        _serve(["--config", str(config)], {})
    assert str(config) in str(caught.value)


def test_bad_environment_values_name_the_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        _serve([], {"CERTHUB_METRICS_PORT": "ninety"})
    # In the operator's words, not Python's ("invalid literal for int() with base 10").
    assert str(caught.value) == "environment CERTHUB_METRICS_PORT: 'ninety' is not a whole number"


def test_a_misspelt_variable_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    env = {
        "CERTHUB_WORKER": "37",  # a typo of CERTHUB_WORKERS
        "CERTHUB_DB": "sqlite://",  # read by every command
        "CERTHUB_TEST_REDIS_URL": "redis://x",  # the tests' own
    }
    with caplog.at_level(logging.WARNING, logger="certhub.config"):
        args, _ = _serve([], env)
    warnings = [r.getMessage() for r in caplog.records if r.name == "certhub.config"]
    assert warnings == [
        "environment variable CERTHUB_WORKER is not a certhub setting "
        "(did you mean CERTHUB_WORKERS?); ignored"
    ]
    assert args.workers != 37


def test_secrets_are_masked() -> None:
    assert (
        mask_secret("db", "postgresql+psycopg://hub:s3cr%40t@db.internal:5432/certhub")
        == "postgresql+psycopg://hub:***@db.internal:5432/certhub"
    )
    assert mask_secret("redis", "redis://:p4ss@cache:6379/0") == "redis://:***@cache:6379/0"
    assert mask_secret("redis", "redis://cache:6379/0") == "redis://cache:6379/0"
    assert mask_secret("api_token", "abc") == "***"
    assert mask_secret("workers", 4) == 4


def test_config_show_prints_toml_with_sources_and_masked_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "hub.toml"
    config.write_text('db = "postgresql+psycopg://hub:hunter2@db/certhub"\nworkers = 4\n')
    monkeypatch.setenv("CERTHUB_METRICS_PORT", "9464")
    assert main(["config", "show", "--config", str(config), "--address", "0.0.0.0:7000"]) == 0
    out = capsys.readouterr().out
    assert "hunter2" not in out
    assert 'db = "postgresql+psycopg://hub:***@db/certhub"' in out
    assert "# environment CERTHUB_METRICS_PORT" in out
    assert "# command line" in out
    # Everything but the masked secret and the unset options is a valid config file.
    parsed = tomllib.loads(out)
    assert parsed["workers"] == 4
    assert parsed["metrics_port"] == 9464
    assert parsed["address"] == "0.0.0.0:7000"

    assert main(["config", "show", "--json", "--config", str(config)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["workers"] == {"value": 4, "source": f"file {config}", "env": "CERTHUB_WORKERS"}
    assert shown["db"]["value"] == "postgresql+psycopg://hub:***@db/certhub"


def test_config_show_reports_a_bad_file_as_a_command_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "hub.toml"
    config.write_text("nope = 1\n")
    assert main(["config", "show", "--config", str(config)]) == 1
    assert "unknown setting 'nope'" in capsys.readouterr().err


def test_every_command_reaches_the_database_named_in_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "elsewhere.db"
    monkeypatch.setenv("CERTHUB_DB", f"sqlite:///{database}")
    monkeypatch.setenv("CERTHUB_DATA_DIR", str(tmp_path / "data"))
    assert main(["db", "status"]) == 1  # empty: behind
    assert main(["db", "upgrade"]) == 0
    assert main(["db", "status"]) == 0
    assert database.exists()
    assert "schema: empty -> " in capsys.readouterr().out
    assert main(["db", "status", "--db", f"sqlite:///{tmp_path / 'other.db'}"]) == 1
