"""The adapter's config file: every problem at once, each with its line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from certhub.adapters import ConfigError, load_config

BROKEN = """\
[department]
code = "11350102MB0000001Y"
signing_key = 5

[hub]
address = "localhost:50051"
ca = "ca.crt"
cert = "a.crt"
key = "a.key"
colour = "red"

[outbox]
streams = 0

[source]
kind = "sql"
url = "sqlite:///department.db"
table = "business_registration"
key = ["reg_no"]
watermark = "row_version"

[[types]]
code = "11350102MB0000001Y001"
name = "营业执照"
kind = "LICENCE"

[[types]]
code = "11350102MB0000001Y002"
name = "食品经营许可证"
kind = "PERMIT"

[mapping]
type = "licence_type"
number = "reg_no"
holder_id_type = { value = "USCC", column = "id_kind" }
holder_id = "uscc"
holder_name = "company_name"
status = "status"
"""


def test_every_problem_is_reported_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "adapter.toml"
    path.write_text(BROKEN, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    lines = str(info.value).splitlines()
    expected = [
        f"{path}:1: [department].name: is required",
        f"{path}:3: [department].signing_key: must be a non-empty string, got 5",
        f"{path}:10: [hub]: unknown key(s) colour (see docs/adapters.md)",
        f"{path}:13: [outbox].streams: must be a whole number from 1 to 32, got 0",
        f"{path}:30: [[types]][1].kind: must be one of LICENCE, APPROVAL, got 'PERMIT'",
        f"{path}:32: [mapping].issued_on: is required (a column name, or {{ value = ... }})",
        f"{path}:32: [mapping].revoked_values: is required with status (e.g. ['注销', '吊销'])",
        f"{path}:35: [mapping].holder_id_type.column: give exactly one of column or value",
    ]
    assert lines == expected


def test_a_missing_table_is_reported_with_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "adapter.toml"
    path.write_text(BROKEN.replace("[hub]", "[hubb]"), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    lines = str(info.value).splitlines()
    assert f"{path}:1: [department].name: is required" in lines
    assert f"{path}:5: top level: unknown key(s) hubb (see docs/adapters.md)" in lines
    # Nowhere to point at: listed last, without a line.
    assert lines[-1] == f"{path}: [hub]: table is missing"
