"""hub.client refuses an unknown id_type as the hub would, and `certhub --version` answers
(issue 15, items 9 and 10)."""

from __future__ import annotations

import grpc
import pytest

from hub.cli.main import main
from hub.client import HubClient, InvalidArgumentError


def test_an_unknown_id_type_is_an_invalid_argument_naming_the_choices() -> None:
    # A channel to nowhere: the refusal comes before any call.
    with (
        HubClient(grpc.insecure_channel("127.0.0.1:1")) as client,
        pytest.raises(InvalidArgumentError) as refused,
    ):
        client.fetch(id_type="PASSPRT", holder_id="E1", service_item="x", case_number="c")
    assert refused.value.reason == "INVALID_HOLDER_ID_TYPE"
    [violation] = refused.value.violations
    assert violation.field == "holder.id_type"
    assert "'PASSPRT' is not one of" in violation.description
    assert "USCC" in violation.description


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("certhub ")
