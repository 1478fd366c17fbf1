"""`certhub stats`: the KPI report a district publishes."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from typing import Any

from certhub.hub.cli.options import add_data_options, config_from
from certhub.hub.errors import InvalidArgument
from certhub.hub.reports import period_json, render, render_period
from certhub.hub.runtime import open_engine
from certhub.hub.services.registry_store import RegistrySource
from certhub.hub.services.stats import Breakdown, compute, parse_query
from certhub.hub.store.engine import make_session_factory, session_scope


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser("stats", help="print the KPI report")
    add_data_options(parser)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--since", default="", help="first day counted, YYYY-MM-DD (China Standard Time)"
    )
    parser.add_argument(
        "--until", default="", help="last day counted, YYYY-MM-DD, inclusive (default today)"
    )
    parser.add_argument(
        "--by",
        action="append",
        default=[],
        type=str.upper,
        choices=[str(b) for b in Breakdown],
        metavar="{month,department,service_item,window}",
        help="break the case figures down (repeatable)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        query = parse_query(args.since, args.until, args.by)
    except InvalidArgument as error:
        print(f"certhub stats: {error.message}", file=sys.stderr)
        return 2
    engine = open_engine(config_from(args))
    sessions = make_session_factory(engine)
    registry = RegistrySource(sessions).refresh()
    with session_scope(sessions) as session:
        period = compute(session, registry, query, now=dt.datetime.now(dt.UTC))
    engine.dispose()
    print(
        json.dumps(period_json(period, registry), ensure_ascii=False, indent=2)
        if args.json
        else render(period.base, registry) + "\n" + render_period(period)
    )
    return 0
