"""Configuration layering for ``certhub serve``: command line > environment > file > defaults.

Every option of the serve parser is also a setting named after its destination: option
``--metrics-port`` is ``metrics_port``, settable as ``CERTHUB_METRICS_PORT`` in the
environment and as ``metrics_port = 9464`` (or ``metrics-port``) in a TOML file given with
``--config FILE`` or ``CERTHUB_CONFIG``. Switches take booleans (``true``/``false`` in the
file; ``1``/``0``, ``true``/``false``, ``yes``/``no``, ``on``/``off`` in the environment);
``--no-reflection`` is the setting ``reflection = false``.

Options added to the parser later are layered too, without changes here:
``add_config_option`` must be the last option added to a parser; it marks every default so
that ``apply_config`` can tell an option given on the command line from one left alone.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "CONFIG_ENV",
    "ENV_PREFIX",
    "ConfigError",
    "Setting",
    "add_config_option",
    "apply_config",
    "mask_secret",
]

log = logging.getLogger("certhub.config")

ENV_PREFIX = "CERTHUB_"
CONFIG_ENV = "CERTHUB_CONFIG"
# CERTHUB_* variables that are not `serve` settings but are read elsewhere: the other commands' data
# dir, database and hub address (certhub.hub.cli.options, certhub.hub.cli.connection), and the
# tests' and benchmarks' own (README, tests/, bench/). Anything else is a typo.
OTHER_ENV = frozenset({"CERTHUB_DATA_DIR", "CERTHUB_DB", "CERTHUB_ADDRESS", CONFIG_ENV})
OTHER_ENV_PREFIXES = ("CERTHUB_TEST_", "CERTHUB_BENCH_", "CERTHUB_MERKLE_", "CERTHUB_CHROMIUM")
# Namespace attributes this module keeps on the parsed arguments.
_ACTIONS_ATTR = "config_actions"
_SETTINGS_ATTR = "config_settings"
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})
# Settings whose whole value is secret, by name; URLs have only their password masked.
_SECRET_NAME = re.compile(r"password|secret|token|credential", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^/@:\s]*:)[^/@\s]+@", re.IGNORECASE)
MASK = "***"


class ConfigError(ValueError):
    """A setting that cannot be used; the message names the setting and its source."""


@dataclass(frozen=True, slots=True)
class Setting:
    """One effective setting: its value and where it came from."""

    name: str
    value: Any
    source: str
    option: str

    @property
    def env_var(self) -> str:
        return ENV_PREFIX + self.name.upper()

    def shown(self) -> Any:
        """The value with secrets masked, for printing."""
        return mask_secret(self.name, self.value)


@dataclass(frozen=True, slots=True)
class _Default:
    """An option's default, marked so the layering knows the user did not give it."""

    value: Any


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--config FILE`` and mark every default of ``parser``; call after all options."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        type=Path,
        default=None,
        help=f"TOML file of settings (also ${CONFIG_ENV}); precedence: command line > "
        f"{ENV_PREFIX}* environment > file > defaults",
    )
    layered = []
    for action in parser._actions:  # argparse has no public list of a parser's actions
        if not action.option_strings or action.dest in ("help", "config"):
            continue
        if isinstance(action, argparse._HelpAction | argparse._VersionAction):
            continue
        action.default = _Default(action.default)
        layered.append(action)
    parser.set_defaults(**{_ACTIONS_ATTR: tuple(layered)})
    parser.epilog = (
        f"Every option is also a setting: {ENV_PREFIX}<OPTION> in the environment (e.g. "
        f"{ENV_PREFIX}METRICS_PORT=9464) or `metrics_port = 9464` in the --config file. "
        "`certhub config show` prints the effective settings and where each came from."
    )


def apply_config(
    args: argparse.Namespace, *, environ: Mapping[str, str] | None = None
) -> list[Setting]:
    """Replace every option left at its default with its environment or file value, in
    place; return the effective settings. Raises ``ConfigError`` naming a bad setting."""
    environ = os.environ if environ is None else environ
    actions: tuple[argparse.Action, ...] = getattr(args, _ACTIONS_ATTR, ())
    _warn_unknown_variables(environ, actions)
    path = args.config if args.config is not None else environ.get(CONFIG_ENV)
    file_values, file_label = _read_file(Path(path), actions) if path else ({}, "")
    settings = []
    for action in actions:
        name = action.dest
        value = getattr(args, name)
        if not isinstance(value, _Default):
            source = "command line"
        elif (var := ENV_PREFIX + name.upper()) in environ:
            source = f"environment {var}"
            value = _from_text(action, environ[var], source)
        elif name in file_values:
            source = file_label
            value = _from_file(action, file_values[name], source)
        else:
            source = "default"
            value = _default_value(action, value.value)
        setattr(args, name, value)
        settings.append(Setting(name=name, value=value, source=source, option=_option(action)))
    setattr(args, _SETTINGS_ATTR, settings)
    return settings


def unknown_variables(
    environ: Mapping[str, str], actions: tuple[argparse.Action, ...]
) -> list[tuple[str, str | None]]:
    """``CERTHUB_*`` variables nothing reads, each with the closest known name (or None)."""
    known = {ENV_PREFIX + a.dest.upper() for a in actions} | OTHER_ENV
    unknown = []
    for var in sorted(environ):
        if not var.startswith(ENV_PREFIX) or var in known or var.startswith(OTHER_ENV_PREFIXES):
            continue
        close = difflib.get_close_matches(var, sorted(known), n=1)
        unknown.append((var, close[0] if close else None))
    return unknown


def _warn_unknown_variables(
    environ: Mapping[str, str], actions: tuple[argparse.Action, ...]
) -> None:
    # A warning, not an error: the same environment file may serve a newer release.
    for var, close in unknown_variables(environ, actions):
        hint = f" (did you mean {close}?)" if close else ""
        log.warning("environment variable %s is not a certhub setting%s; ignored", var, hint)


def mask_secret(name: str, value: Any) -> Any:
    """``value`` fit to print: secret-named settings hidden, passwords in URLs masked."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if _SECRET_NAME.search(name):
        return MASK
    if isinstance(value, str):
        return _URL_PASSWORD.sub(lambda m: f"{m.group('head')}{MASK}@", value)
    if isinstance(value, list | tuple):
        return [mask_secret(name, v) for v in value]
    return value


def _option(action: argparse.Action) -> str:
    return max(action.option_strings, key=len)


def _read_file(path: Path, actions: tuple[argparse.Action, ...]) -> tuple[dict[str, Any], str]:
    label = f"file {path}"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"config file {path}: cannot read it ({e.strerror})") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path}: not valid TOML: {e}") from e
    known = {a.dest for a in actions}
    values: dict[str, Any] = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name not in known:
            raise ConfigError(
                f"config file {path}: unknown setting {key!r}; known settings: "
                + ", ".join(sorted(known))
            )
        values[name] = value
    return values, label


def _is_switch(action: argparse.Action) -> bool:
    return action.nargs == 0 and isinstance(action.const, bool)


def _default_value(action: argparse.Action, default: Any) -> Any:
    # argparse converts string defaults with the option's type; do the same.
    if isinstance(default, str) and callable(action.type):
        return action.type(default)
    return default


def _from_text(action: argparse.Action, text: str, source: str) -> Any:
    if _is_switch(action):
        lowered = text.strip().lower()
        # Like the file, the environment sets the destination: CERTHUB_REFLECTION=false.
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ConfigError(f"{source}: {text!r} is not a boolean (use true or false)")
    if action.nargs in ("*", "+") or isinstance(action, argparse._AppendAction):
        return [
            _checked(action, _typed(action, part.strip(), source), source)
            for part in text.split(",")
            if part.strip()
        ]
    return _checked(action, _typed(action, text, source), source)


def _from_file(action: argparse.Action, value: Any, source: str) -> Any:
    where = f"{source}: {action.dest}"
    if _is_switch(action):
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, not {value!r}")
        # The setting names the destination: `no_cache = true` sets it to True.
        return value
    if isinstance(value, list):
        return [_from_file_scalar(action, v, where) for v in value]
    return _from_file_scalar(action, value, where)


def _from_file_scalar(action: argparse.Action, value: Any, where: str) -> Any:
    # TOML has types: a number is written as one (`workers = 2`), text as text. A quoted
    # number is refused rather than converted, so the file means what it says.
    wants_number = action.type in (int, float)
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        expected = "a number" if wants_number else "a string"
        raise ConfigError(f"{where} must be {expected}, not {value!r}")
    if wants_number and isinstance(value, str):
        raise ConfigError(f"{where} must be a number, not the string {value!r} (drop the quotes)")
    if action.type is int and isinstance(value, float):
        raise ConfigError(f"{where} must be a whole number, not {value!r}")
    if not wants_number and not isinstance(value, str):
        raise ConfigError(f"{where} must be a string, not {value!r} (quote it)")
    return _checked(action, _typed(action, str(value), where), where)


def _typed(action: argparse.Action, text: str, where: str) -> Any:
    if not callable(action.type):
        return text
    try:
        return action.type(text)
    except (TypeError, ValueError, argparse.ArgumentTypeError) as e:
        if action.type is int:
            problem = "is not a whole number"
        elif action.type is float:
            problem = "is not a number"
        else:
            problem = f"is not valid for {_option(action)}: {e}"
        raise ConfigError(f"{where}: {text!r} {problem}") from e


def _checked(action: argparse.Action, value: Any, where: str) -> Any:
    if action.choices is not None and value not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise ConfigError(f"{where}: {value!r} is not one of {choices}")
    return value
