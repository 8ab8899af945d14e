"""Every route of the API refuses a request without a live token of the right scope.

The routes come from the OpenAPI document, so a new route is covered as soon as
it exists; the expected scope comes from a rule written here (reads ``read``,
writes ``write``, ``/audit`` and ``/tokens`` ``admin``), not from the code under
test. Requests go to a live web process.
"""

from __future__ import annotations

import getpass
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.acceptance.api_support import Api, actor, running, token
from tests.acceptance.workers import ROOT, Web

pytestmark = pytest.mark.acceptance


def document() -> dict[str, Any]:
    """The OpenAPI document, built in-process (the live one is compared with it below)."""
    from app.web.api import api  # after api_support has set Django up

    return api.get_openapi_schema()


DOCUMENT = document()
ROUTES = sorted(
    (method.upper(), path)
    for path, operations in DOCUMENT["paths"].items()
    for method in operations
)
#: Values for path parameters: well-formed, naming nothing that exists.
PATH_VALUES = {
    "job_id": str(uuid.UUID(int=1)),
    "schedule_id": "999999",
    "name": "no-such-schedule",
    "prefix": "nosuchprefix",
}
#: A body that fails validation or names nothing, so a request that passes auth changes nothing.
INERT_BODY = {"limit": 0, "name": "", "handler": "", "task": ""}


def scope_of(method: str, path: str) -> str:
    """The scope the rule gives a route."""
    if re.match(r"/api/v1/(audit|tokens)\b", path):
        return "admin"
    return "read" if method == "GET" else "write"


def url_of(path: str) -> str:
    filled = re.sub(r"\{(?:\w+:)?(\w+)\}", lambda m: PATH_VALUES[m.group(1)], path)
    return filled.removeprefix("/api/v1")


@pytest.fixture(scope="module")
def web() -> Iterator[Web]:
    with running(worker=False, beat=False) as process:
        yield process


@pytest.fixture(scope="module")
def secrets() -> dict[str, str]:
    return {
        "read": token("read")[1],
        "write": token("write")[1],
        "admin": token("admin")[1],
        "expired": token("admin", expired=True)[1],
        "revoked": token("admin", revoked=True)[1],
    }


def send(web: Web, method: str, path: str, headers: dict[str, str]) -> Any:
    body = INERT_BODY if method in ("POST", "PATCH", "PUT") else None
    return Api(web.url).call(method, url_of(path), headers=headers, json=body)


def test_the_live_document_lists_the_routes_covered_here(web: Web, secrets: dict[str, str]) -> None:
    live = Api(web.url, secrets["read"]).ok("GET", "/openapi.json")
    assert sorted((m.upper(), p) for p, ops in live["paths"].items() for m in ops) == ROUTES
    assert len(ROUTES) >= 25


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_each_route_names_the_scope_the_rule_gives(method: str, path: str) -> None:
    operation = DOCUMENT["paths"][path][method.lower()]
    assert operation["x-scope"] == scope_of(method, path)
    assert operation["security"] == [{"TokenAuth": []}]
    assert {"401", "403", "422"} <= set(map(str, operation["responses"]))


REFUSED = {
    "no token": {},
    "bad token": {"Authorization": "Bearer cvy_00000000_not-a-real-token"},
    "not bearer": {"Authorization": "Basic dXNlcjpwYXNz"},
    "empty bearer": {"Authorization": "Bearer "},
}


@pytest.mark.parametrize("case", [*REFUSED, "expired", "revoked"])
@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_route_answers_401_without_a_live_token(
    web: Web, secrets: dict[str, str], method: str, path: str, case: str
) -> None:
    headers = REFUSED[case] if case in REFUSED else {"Authorization": f"Bearer {secrets[case]}"}
    reply = send(web, method, path, headers)
    assert reply.status_code == 401, reply.text
    assert reply.headers["WWW-Authenticate"].startswith("Bearer")
    assert reply.json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_a_token_below_the_scope_gets_403_and_one_with_it_gets_through(
    web: Web, secrets: dict[str, str], method: str, path: str
) -> None:
    needed = scope_of(method, path)
    order = ["read", "write", "admin"]
    for scope in order:
        reply = send(web, method, path, {"Authorization": f"Bearer {secrets[scope]}"})
        if order.index(scope) < order.index(needed):
            assert reply.status_code == 403, f"{scope} token: {reply.text}"
            assert reply.json()["error"]["code"] == "forbidden"
        else:
            assert reply.status_code not in (401, 403), f"{scope} token: {reply.text}"
            assert reply.status_code < 500, f"{scope} token: {reply.text}"


def test_the_document_and_its_page_need_a_token_too(web: Web, secrets: dict[str, str]) -> None:
    client = Api(web.url)
    for path in ("/openapi.json", "/docs"):
        assert client.call("GET", path).status_code == 401
        assert client.call("GET", path, secret=secrets["read"]).status_code == 200


def test_tokens_are_stored_hashed() -> None:
    from app.web.models import ApiToken

    row, secret = token("read")
    stored = ApiToken.objects.get(pk=row.pk)
    assert secret not in {stored.digest, stored.prefix, stored.name} and len(stored.digest) == 64


def test_tokens_made_and_revoked_through_the_api_are_audited(
    web: Web, secrets: dict[str, str]
) -> None:
    admin = Api(web.url, secrets["admin"])
    made = admin.ok(
        "POST", "/tokens", 201, json={"name": "made-by-api", "scope": "read", "days": 1}
    )
    assert made["active"] and "digest" not in made
    Api(web.url, made["secret"]).ok("GET", "/jobs")
    assert made["prefix"] in [t["prefix"] for t in admin.ok("GET", "/tokens")]
    assert admin.ok("DELETE", f"/tokens/{made['prefix']}")["active"] is False
    assert Api(web.url, made["secret"]).call("GET", "/jobs").status_code == 401
    records = admin.ok("GET", "/audit", params={"target": f"token:{made['prefix']}"})["items"]
    by_action = {r["action"]: r for r in records}
    assert set(by_action) == {"token.create", "token.revoke"}
    assert by_action["token.create"]["actor"].startswith("token:")
    assert made["secret"] not in str(records)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", "tokens", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_tokens_made_and_revoked_from_the_shell_are_audited(
    web: Web, secrets: dict[str, str]
) -> None:
    made = cli("create", "made-by-cli", "--scope", "write", "--days", "1")
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    prefix = secret.split("_")[1]
    assert Api(web.url, secret).call("POST", "/jobs", json={}).status_code == 422  # write scope
    assert cli("revoke", prefix).returncode == 0
    assert Api(web.url, secret).call("GET", "/jobs").status_code == 401
    [listed] = [line for line in cli("list", "--all").stdout.splitlines() if prefix in line]
    assert "revoked" in listed and "made-by-cli" in listed
    admin = Api(web.url, secrets["admin"])
    records = admin.ok("GET", "/audit", params={"target": f"token:{prefix}"})["items"]
    assert {(r["action"], r["actor"]) for r in records} == {
        ("token.create", f"cli:{getpass.getuser()}"),
        ("token.revoke", f"cli:{getpass.getuser()}"),
    }
    assert secret not in str(records)


def test_an_action_records_the_acting_token(web: Web, secrets: dict[str, str]) -> None:
    row, secret = token("write", "acting-token")
    job = {"handler": "probe.record", "payload": {"key": "who"}, "schedule": "10m"}
    Api(web.url, secret).ok("POST", "/jobs", 201, json=job)
    records = Api(web.url, secrets["admin"]).ok("GET", "/audit", params={"actor": actor(row)})
    assert [r["action"] for r in records["items"]] == ["job.enqueue"]
