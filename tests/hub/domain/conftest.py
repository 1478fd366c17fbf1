"""Shared payload documents for the domain tests."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable

# The GB/T 36904 identifier DESIGN.md gives as passing its check character, and its parts.
_KNOWN_GOOD_ID = "1.2.156.3005.2.11100000000013338W011.11430000006122244L.20230000403.001.U"
_KNOWN_TYPE_CODE = "11100000000013338W011"
_KNOWN_ISSUER = "11430000006122244L"


@pytest.fixture
def document() -> dict[str, object]:
    """A valid certificate payload document; each test gets its own copy to change."""
    return {
        "certificate_id": _KNOWN_GOOD_ID,
        "type_code": _KNOWN_TYPE_CODE,
        "name": "食品经营许可证",
        "kind": "LICENCE",
        "number": "JY13501020012345",
        "holder": {"id_type": "RESIDENT_ID", "id": "11010519491231002X", "name": "张三"},
        "issuer": {"code": _KNOWN_ISSUER, "name": "市场监督管理局"},
        "issued_on": "2023-03-01",
        "valid_from": "2023-03-01",
        "valid_until": "2028-02-28",
        "version": 1,
        "fields": {"经营场所": "福州市鼓楼区东街1号", "经营范围": "预包装食品销售\n热食类食品制售"},
        "attachment": {
            "media_type": "application/ofd",
            "sha256": "ab" * 32,
            "size": 123_456,
        },
    }


@pytest.fixture
def encode() -> Callable[[object], bytes]:
    """JSON as a department's adapter would send it (not the canonical encoding)."""

    def _encode(value: object) -> bytes:
        return json.dumps(value, ensure_ascii=False, indent=1).encode("utf-8")

    return _encode
