"""`certhub config show`: the configuration `certhub serve` would run with, secrets masked.

Takes exactly the options of `certhub serve` (including ``--config FILE``) and layers them
the same way (``certhub.hub.config``), then prints every setting as TOML with where it came from.
The output, with the masked secrets filled in, is a valid ``--config`` file.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from certhub.hub.cli import serve
from certhub.hub.cli.main import CommandError
from certhub.hub.config import ConfigError, Setting, apply_config


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "config", help="the effective configuration of `certhub serve`"
    )
    sub = parser.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    show = sub.add_parser(
        "show",
        parents=[_serve_parser()],
        conflict_handler="resolve",
        help="print the effective `certhub serve` settings and their sources, secrets masked",
        description="Accepts every `certhub serve` option. Precedence: command line > "
        "CERTHUB_* environment > --config file (or $CERTHUB_CONFIG) > defaults.",
    )
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(func=run_show)


def _serve_parser() -> argparse.ArgumentParser:
    """The real `certhub serve` parser, so `config show` always takes the same options."""
    subparsers = argparse.ArgumentParser(add_help=False).add_subparsers()
    serve.register(subparsers)
    return subparsers.choices["serve"]


def run_show(args: argparse.Namespace) -> int:
    try:
        settings = apply_config(args)
    except ConfigError as e:
        raise CommandError(str(e)) from e
    print(as_json(settings) if args.json else as_toml(settings))
    return 0


def as_json(settings: list[Setting]) -> str:
    return json.dumps(
        {
            s.name: {"value": _plain(s.shown()), "source": s.source, "env": s.env_var}
            for s in settings
        },
        ensure_ascii=False,
        indent=2,
    )


def as_toml(settings: list[Setting]) -> str:
    lines = ["# effective `certhub serve` configuration (secrets masked)"]
    width = max(len(_toml_line(s)) for s in settings)
    for s in settings:
        line = _toml_line(s)
        lines.append(f"{line}{' ' * (width - len(line))}  # {s.source}")
    return "\n".join(lines)


def _toml_line(s: Setting) -> str:
    value = s.shown()
    if value is None:
        return f"# {s.name} = (not set)"
    return f"{s.name} = {_toml_value(value)}"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)  # a JSON string is a TOML basic string


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return str(value)
