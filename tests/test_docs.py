"""The documentation matches the code: the README links the guides, every `certhub` command
has an example in docs/operations.md, and every grpcurl example in docs/api.md is a request
the hub accepts (its JSON parsed into the method's request type and sent, over mTLS, as the
principal whose certificate the example uses)."""

from __future__ import annotations

import base64
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import MethodDescriptor
from grpc_health.v1 import health_pb2
from support.hubs import RunningHub

from certhub.hub.cli.main import build_parser
from certhub.hub.demo.world import (
    CITIZEN_APP,
    DemoWorld,
    certificate_payload,
    enterprise,
    sign_certificate,
    sign_revocation,
)
from certhub.v1 import audit_pb2, citizen_pb2, directory_pb2, ingest_pb2, intake_pb2

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
# What an example may legitimately get from the test hub, whose data differs from the demo
# district the docs use: a certificate id or log size the demo has and the test hub has not.
ACCEPTABLE = {grpc.StatusCode.OK, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.OUT_OF_RANGE}


def test_readme_links_every_guide() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for guide in ("architecture.md", "operations.md", "api.md", "adapters.md"):
        assert f"docs/{guide}" in readme, f"README does not link docs/{guide}"
    for guide in ("architecture.md", "operations.md", "api.md"):
        assert (DOCS / guide).is_file()


def test_every_command_has_an_example_in_the_operations_guide() -> None:
    guide = (DOCS / "operations.md").read_text(encoding="utf-8")
    parser = build_parser()
    [subparsers] = [a for a in parser._actions if a.dest == "command"]
    assert isinstance(subparsers.choices, dict)
    missing = [name for name in subparsers.choices if f"certhub {name}" not in guide]
    assert not missing, f"commands without an example in docs/operations.md: {missing}"


@dataclass(frozen=True)
class Example:
    principal: str
    method: str  # "package.Service/Method"
    body: str


def _examples() -> list[Example]:
    text = (DOCS / "api.md").read_text(encoding="utf-8")
    principals = dict(re.findall(r'^(\w+)="-cacert .*?/clients/([\w-]+)\.crt', text, re.M))
    joined = re.sub(r"\\\n\s*", " ", text)
    examples = []
    for line in joined.splitlines():
        if not line.startswith("grpcurl $"):
            continue
        words = shlex.split(line, posix=True)
        credential = words[1].lstrip("$")
        target = words[-1]
        if "/" not in target:
            continue  # list / describe: reflection, tested in tests/hub/grpc
        body = words[words.index("-d") + 1] if "-d" in words else "{}"
        if body == "@":
            continue  # a stream fed from a shell loop
        examples.append(Example(principals[credential], target, body))
    return examples


def test_api_guide_has_a_grpcurl_example_for_every_rpc() -> None:
    documented = {e.method for e in _examples()} | {"certhub.v1.IngestService/PushCertificates"}
    for module in (ingest_pb2, intake_pb2, directory_pb2, audit_pb2, citizen_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                assert f"{service.full_name}/{method.name}" in documented, method.full_name


def _method(path: str) -> MethodDescriptor:
    service_name, method_name = path.split("/")
    for module in (ingest_pb2, intake_pb2, directory_pb2, audit_pb2, citizen_pb2, health_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            if service.full_name == service_name:
                return service.methods_by_name[method_name]
    raise AssertionError(f"{path}: no such method in the contract")


def test_every_grpcurl_example_is_accepted_by_a_real_hub(
    running_hub: RunningHub, world: DemoWorld
) -> None:
    licence = world.type_by_name("营业执照")
    key = world.departments[licence.issuer].key
    payload = certificate_payload(world, licence.code, enterprise(81), serial=81)
    files = {
        "licence.dsse.json": sign_certificate(payload, [key]),
        "revocation.dsse.json": sign_revocation(payload.certificate_id, key),
    }
    examples = _examples()
    assert len(examples) >= 15
    token = ""
    for example in examples:
        if "$token" in example.body and not token:
            token = _presentation_token(running_hub, world)
        body = re.sub(
            r"\$\(base64 -w0 ([\w.-]+)\)",
            lambda m: base64.b64encode(files[m.group(1)]).decode(),
            example.body.replace("$token", token),
        )
        method = _method(example.method)
        request_class = message_factory.GetMessageClass(method.input_type)
        response_class = message_factory.GetMessageClass(method.output_type)
        request = json_format.Parse(body, request_class())
        with running_hub.client(example.principal) as client:
            call = client.channel.unary_unary(
                f"/{example.method}",
                request_serializer=request_class.SerializeToString,
                response_deserializer=response_class.FromString,
            )
            try:
                call(request, timeout=10)
                code = grpc.StatusCode.OK
            except grpc.RpcError as error:
                code = error.code()
                details = error.details()
        assert code in ACCEPTABLE, f"{example.method} as {example.principal}: {code} {details}"


def _presentation_token(running_hub: RunningHub, world: DemoWorld) -> str:
    """A real presentation token for the RedeemPresentation example (its ``$token``)."""
    licence = world.type_by_name("营业执照")
    key = world.departments[licence.issuer].key
    payload = certificate_payload(world, licence.code, enterprise(82), serial=82)
    with running_hub.client(world.departments[licence.issuer].principal) as department:
        department.push(sign_certificate(payload, [key]))
    with running_hub.client(CITIZEN_APP) as app:
        created = app.create_presentation(
            payload.certificate_id, id_type="USCC", holder_id=enterprise(82).holder.id
        )
    return created.token


@pytest.mark.parametrize("guide", ["architecture.md", "operations.md", "api.md"])
def test_guides_link_only_to_files_that_exist(guide: str) -> None:
    text = (DOCS / guide).read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#:]+\.md)\)", text):
        if target != "adapters.md":  # written by the adapters work; checked in the README test
            assert (DOCS / target).is_file(), f"{guide} links {target}"
