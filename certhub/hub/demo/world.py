"""A realistic demo district (modelled on Fuzhou's Gulou): departments with their keys,
certificate types of both kinds, service items (most exempt, some not), principals, and
signed certificates for holders with valid resident IDs and USCCs.

Used by `certhub demo`, by the benchmarks and by the tests' fixtures, so all three exercise
the same registry a newcomer sees.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from certhub.hub.domain.certificate import (
    Attachment,
    CertificateKind,
    CertificatePayload,
    RevocationPayload,
    certificate_payload_json,
    revocation_payload_json,
)
from certhub.hub.domain.holder import Holder, IdType, resident_id, uscc
from certhub.hub.domain.identifier import make_identifier
from certhub.signing import (
    CERTIFICATE_PAYLOAD_TYPE,
    REVOCATION_PAYLOAD_TYPE,
    Algorithm,
    PrivateKey,
    sign_envelope,
)

GULOU_REGION = "350102"
KEYS_VALID_FROM = dt.date(2020, 1, 1)
# The demo's citizen-app principal (e.g. 闽政通): acts for the applicant it authenticated.
CITIZEN_APP = "mzt-citizen-app"


@dataclass(frozen=True, kw_only=True)
class DemoDepartment:
    code: str
    name: str
    principal: str
    key: PrivateKey


@dataclass(frozen=True, kw_only=True)
class DemoType:
    code: str
    name: str
    kind: CertificateKind
    issuer: str
    validity_years: int | None


@dataclass(frozen=True, kw_only=True)
class DemoItem:
    code: str
    name: str
    materials: tuple[tuple[str, str, tuple[str, ...]], ...]  # (code, name, type codes)
    consent_required: bool = False


@dataclass(frozen=True, kw_only=True)
class DemoPrincipal:
    name: str
    role: str
    department: str | None = None
    service_items: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class DemoHolder:
    holder: Holder
    name: str


@dataclass(kw_only=True)
class DemoWorld:
    departments: dict[str, DemoDepartment]
    types: dict[str, DemoType]
    items: dict[str, DemoItem]
    principals: list[DemoPrincipal]
    accept_legacy_uscc: bool = False
    log_origin: str = "certhub.example.gov.cn/gulou"
    extra_keys: dict[str, list[tuple[PrivateKey, dt.date, dt.date | None, str]]] = field(
        default_factory=dict
    )

    def department_by_name(self, fragment: str) -> DemoDepartment:
        return next(d for d in self.departments.values() if fragment in d.name)

    def type_by_name(self, name: str) -> DemoType:
        return next(t for t in self.types.values() if t.name == name)

    def item_by_name(self, fragment: str) -> DemoItem:
        return next(i for i in self.items.values() if fragment in i.name)

    def principal(self, role: str, department: str | None = None) -> DemoPrincipal:
        return next(
            p
            for p in self.principals
            if p.role == role and (department is None or p.department == department)
        )

    def registry_toml(self) -> str:
        """The registry file for this world, as an operator would keep it."""
        out = [
            "# Demo registry: Gulou district, Fuzhou (codes are made up but valid).",
            "[settings]",
            f"accept_legacy_uscc = {'true' if self.accept_legacy_uscc else 'false'}",
            f"log_origin = {_q(self.log_origin)}",
            "",
        ]
        for d in self.departments.values():
            out += ["[[departments]]", f"code = {_q(d.code)}", f"name = {_q(d.name)}", ""]
            keys = [(d.key, KEYS_VALID_FROM, None, "active"), *self.extra_keys.get(d.code, [])]
            for key, not_before, not_after, status in keys:
                out += [
                    "  [[departments.keys]]",
                    f'  public_key = """\n{key.public_key.to_pem().decode()}"""',
                    f"  not_before = {not_before.isoformat()}",
                ]
                if not_after is not None:
                    out.append(f"  not_after = {not_after.isoformat()}")
                out += [f"  status = {_q(status)}", ""]
        for t in self.types.values():
            out += [
                "[[certificate_types]]",
                f"code = {_q(t.code)}",
                f"name = {_q(t.name)}",
                f"kind = {_q(str(t.kind))}",
                f"issuers = [{_q(t.issuer)}]",
                "",
            ]
        for i in self.items.values():
            out += ["[[service_items]]", f"code = {_q(i.code)}", f"name = {_q(i.name)}"]
            out += ["consent_required = true", ""] if i.consent_required else [""]
            for code, name, types in i.materials:
                out += [
                    "  [[service_items.materials]]",
                    f"  code = {_q(code)}",
                    f"  name = {_q(name)}",
                    f"  types = [{', '.join(_q(t) for t in types)}]",
                    "",
                ]
        for p in self.principals:
            out += ["[[principals]]", f"name = {_q(p.name)}", f"role = {_q(p.role)}"]
            if p.department:
                out.append(f"department = {_q(p.department)}")
            if p.service_items:
                out.append(f"service_items = [{', '.join(_q(s) for s in p.service_items)}]")
            out.append("")
        return "\n".join(out)


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


# (short name, full name, principal) — department codes are government-organ USCCs (11...).
_DEPARTMENTS = (
    ("amr", "福州市鼓楼区市场监督管理局", "gulou-amr-adapter"),
    ("health", "福州市鼓楼区卫生健康局", "gulou-health-adapter"),
    ("housing", "福州市鼓楼区住房和城乡建设局", "gulou-housing-adapter"),
    ("police", "福州市公安局鼓楼分局", "gulou-police-adapter"),
    ("hrss", "福州市鼓楼区人力资源和社会保障局", "gulou-hrss-adapter"),
    ("civil", "福州市鼓楼区民政局", "gulou-civil-adapter"),
)

# (department, name, kind, validity years or None for no expiry)
_TYPES = (
    ("amr", "营业执照", "LICENCE", None),
    ("amr", "食品经营许可证", "LICENCE", 5),
    ("amr", "药品经营许可证", "LICENCE", 5),
    ("amr", "第二类医疗器械经营备案凭证", "APPROVAL", None),
    ("amr", "企业名称自主申报告知书", "APPROVAL", 1),
    ("health", "医疗机构执业许可证", "LICENCE", 5),
    ("health", "公共场所卫生许可证", "LICENCE", 4),
    ("health", "放射诊疗许可证", "LICENCE", 4),
    ("health", "母婴保健技术服务执业许可证", "LICENCE", 3),
    ("housing", "建筑工程施工许可证", "LICENCE", None),
    ("housing", "商品房预售许可证", "LICENCE", None),
    ("housing", "房屋租赁登记备案证明", "APPROVAL", 3),
    ("housing", "建设工程竣工验收备案批复", "APPROVAL", None),
    ("police", "居民身份证", "LICENCE", 20),
    ("police", "居住证", "LICENCE", 1),
    ("police", "户口簿", "LICENCE", None),
    ("hrss", "人力资源服务许可证", "LICENCE", 5),
    ("hrss", "劳务派遣经营许可证", "LICENCE", 3),
    ("hrss", "就业创业证", "APPROVAL", None),
    ("civil", "结婚证", "LICENCE", None),
    ("civil", "社会组织成立登记批复", "APPROVAL", None),
)

# (item name, [(material name, [type names]), ...]); a material with no types needs paper.
_ITEMS = (
    (
        "食品经营许可（新办）",
        (("营业执照", ("营业执照",)), ("法定代表人身份证明", ("居民身份证",))),
    ),
    (
        "食品经营许可（变更）",
        (("营业执照", ("营业执照",)), ("原食品经营许可证", ("食品经营许可证",))),
    ),
    (
        "公共场所卫生许可（新办）",
        (("营业执照", ("营业执照",)), ("负责人身份证明", ("居民身份证",))),
    ),
    (
        "医疗机构执业登记",
        (
            ("营业执照", ("营业执照",)),
            ("医疗机构执业许可证", ("医疗机构执业许可证",)),
            ("房屋产权或租赁证明", ("房屋租赁登记备案证明",)),
        ),
    ),
    (
        "药品零售企业开办",
        (
            ("营业执照", ("营业执照",)),
            ("质量负责人身份证明", ("居民身份证",)),
            ("经营场所证明", ("房屋租赁登记备案证明",)),
        ),
    ),
    (
        "人力资源服务许可",
        (("营业执照", ("营业执照",)), ("经营场所证明", ("房屋租赁登记备案证明",))),
    ),
    (
        "劳务派遣经营许可（延续）",
        (("营业执照", ("营业执照",)), ("原劳务派遣经营许可证", ("劳务派遣经营许可证",))),
    ),
    ("居住证签注", (("身份证明", ("居民身份证",)), ("原居住证", ("居住证",)))),
    ("就业登记", (("身份证明", ("居民身份证",)), ("就业创业证", ("就业创业证",)))),
    (
        "生育登记服务",
        (("夫妻双方身份证明", ("居民身份证",)), ("结婚证", ("结婚证",)), ("户口簿", ("户口簿",))),
    ),
    (
        "建筑工程施工许可",
        (("营业执照", ("营业执照",)), ("建设工程规划许可证", ()), ("施工合同", ())),
    ),
    (
        "放射诊疗许可（新办）",
        (("医疗机构执业许可证", ("医疗机构执业许可证",)), ("放射防护评价报告", ())),
    ),
    (
        "社会组织成立登记",
        (("成立登记批复", ("社会组织成立登记批复",)), ("负责人身份证明", ("居民身份证",))),
    ),
)

_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高"
_GIVEN = (
    "伟",
    "芳",
    "娜",
    "秀英",
    "敏",
    "静",
    "丽",
    "强",
    "磊",
    "军",
    "洋",
    "勇",
    "艳",
    "杰",
    "娟",
    "涛",
    "明",
    "超",
    "秀兰",
    "霞",
)
_SHOPS = ("榕城", "三坊七巷", "闽江", "鼓山", "西湖", "温泉", "乌山", "屏山", "东街", "南门")
_TRADES = (
    "餐饮管理有限公司",
    "大药房有限公司",
    "诊所有限公司",
    "人力资源服务有限公司",
    "建筑工程有限公司",
    "便利店",
)


def build_world(*, algorithm: Algorithm = Algorithm.ED25519) -> DemoWorld:
    """A fresh world with newly generated department keys."""
    departments: dict[str, DemoDepartment] = {}
    short_to_code: dict[str, str] = {}
    for n, (short, name, principal) in enumerate(_DEPARTMENTS, start=1):
        code = uscc(f"11{GULOU_REGION}MB{n:07d}")
        short_to_code[short] = code
        departments[code] = DemoDepartment(
            code=code, name=name, principal=principal, key=PrivateKey.generate(algorithm)
        )
    types: dict[str, DemoType] = {}
    by_name: dict[str, str] = {}
    per_department: dict[str, int] = {}
    for short, name, kind, years in _TYPES:
        code = short_to_code[short]
        per_department[code] = per_department.get(code, 0) + 1
        type_code = f"{code}{per_department[code]:03d}"
        types[type_code] = DemoType(
            code=type_code, name=name, kind=CertificateKind(kind), issuer=code, validity_years=years
        )
        by_name[name] = type_code
    items: dict[str, DemoItem] = {}
    for n, (name, materials) in enumerate(_ITEMS, start=1):
        code = f"350102-{n:04d}"
        items[code] = DemoItem(
            code=code,
            name=name,
            materials=tuple(
                (f"M{m:02d}", mname, tuple(by_name[t] for t in tnames))
                for m, (mname, tnames) in enumerate(materials, start=1)
            ),
        )
    principals = [
        DemoPrincipal(name=d.principal, role="DEPARTMENT", department=d.code)
        for d in departments.values()
    ]
    all_items = tuple(items)
    principals += [
        DemoPrincipal(name="gulou-service-centre", role="INTAKE", service_items=all_items),
        DemoPrincipal(name="wenquan-street-office", role="INTAKE", service_items=all_items[:3]),
        DemoPrincipal(name="gulou-audit-office", role="AUDITOR"),
        DemoPrincipal(name="gulou-operator", role="OPERATOR"),
        # The government app that has authenticated the applicant (CitizenService).
        DemoPrincipal(name=CITIZEN_APP, role="CITIZEN_APP"),
    ]
    return DemoWorld(departments=departments, types=types, items=items, principals=principals)


def citizen(n: int) -> DemoHolder:
    """The n-th demo citizen: a valid Gulou resident ID and a name."""
    born = dt.date(1960, 1, 1) + dt.timedelta(days=(n * 379) % 16000)
    name = _SURNAMES[n % len(_SURNAMES)] + _GIVEN[(n // len(_SURNAMES)) % len(_GIVEN)]
    return DemoHolder(
        holder=Holder(IdType.RESIDENT_ID, resident_id(GULOU_REGION, born, n % 1000)), name=name
    )


def enterprise(n: int) -> DemoHolder:
    """The n-th demo enterprise: a valid USCC (91... = enterprise) and a name."""
    code = uscc(f"91{GULOU_REGION}{n:09d}")
    name = f"福州{_SHOPS[n % len(_SHOPS)]}{_TRADES[n % len(_TRADES)]}"
    return DemoHolder(holder=Holder(IdType.USCC, code), name=name)


def certificate_payload(
    world: DemoWorld,
    type_code: str,
    holder: DemoHolder,
    *,
    serial: int,
    version: int = 1,
    issued_on: dt.date = dt.date(2024, 3, 1),
    attachment: bytes | None = None,
    fields: dict[str, str] | None = None,
) -> CertificatePayload:
    t = world.types[type_code]
    dept = world.departments[t.issuer]
    identifier = make_identifier(
        type_code=type_code,
        issuer=dept.code,
        serial=f"{issued_on.year}{serial:08d}",
        version=version,
    )
    valid_until = (
        None
        if t.validity_years is None
        else issued_on.replace(year=issued_on.year + t.validity_years) - dt.timedelta(days=1)
    )
    digest = None
    if attachment is not None:
        digest = Attachment(
            media_type="application/pdf",
            sha256=hashlib.sha256(attachment).hexdigest(),
            size=len(attachment),
        )
    return CertificatePayload(
        certificate_id=str(identifier),
        type_code=type_code,
        name=t.name,
        kind=t.kind,
        number=f"JY{dept.code[8:14]}{serial:08d}",
        holder=holder.holder,
        holder_name=holder.name,
        issuer_code=dept.code,
        issuer_name=dept.name,
        issued_on=issued_on,
        valid_from=issued_on,
        valid_until=valid_until,
        version=version,
        fields=fields or {"住所": "福州市鼓楼区五四路1号", "经营范围": "预包装食品销售"},
        attachment=digest,
    )


def sign_certificate(payload: CertificatePayload, keys: Sequence[PrivateKey]) -> bytes:
    return sign_envelope(
        CERTIFICATE_PAYLOAD_TYPE, certificate_payload_json(payload), keys
    ).to_json()


def sign_revocation(
    certificate_id: str,
    key: PrivateKey,
    *,
    reason: str = "注销",
    revoked_at: dt.datetime | None = None,
) -> bytes:
    payload = RevocationPayload(
        certificate_id=certificate_id,
        reason=reason,
        revoked_at=revoked_at or dt.datetime.now(dt.UTC),
    )
    return sign_envelope(REVOCATION_PAYLOAD_TYPE, revocation_payload_json(payload), [key]).to_json()


def sample_certificates(
    world: DemoWorld, *, holders: int
) -> Iterator[tuple[DemoDepartment, CertificatePayload]]:
    """Certificates for ``holders`` citizens and as many enterprises, spread over all types."""
    serial = 0
    citizen_types = [
        t
        for t in world.types.values()
        if t.name in {"居民身份证", "居住证", "户口簿", "结婚证", "就业创业证"}
    ]
    company_types = [t for t in world.types.values() if t not in citizen_types]
    for n in range(holders):
        person, company = citizen(n), enterprise(n)
        for t in citizen_types[: 2 + n % 4]:
            serial += 1
            yield (
                world.departments[t.issuer],
                certificate_payload(world, t.code, person, serial=serial),
            )
        for t in company_types[n % 3 :: 3]:
            serial += 1
            yield (
                world.departments[t.issuer],
                certificate_payload(world, t.code, company, serial=serial),
            )
