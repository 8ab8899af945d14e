"""Schemathesis against the live OpenAPI document: no 5xx, every answer as documented.

``schemathesis run`` (its CLI, as a user would run it) generates requests for
every operation, valid and invalid, with an admin token, against a web process
with a real worker and beat behind it. Its reports go to
``var/test-artifacts/api-schema/``.
"""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acceptance.api_support import Api, running, token
from tests.acceptance.workers import ROOT, Web

pytestmark = pytest.mark.acceptance

ARTIFACTS = ROOT / "var" / "test-artifacts" / "api-schema"
CHECKS = "not_a_server_error,response_schema_conformance"
#: Revoking tokens is run on its own, last: in the main run, schemathesis's stateful
#: phase follows GET /tokens to DELETE /tokens/{prefix} and revokes the very token it
#: sends, which would turn the rest of the run into 401s.
REVOKE = "DELETE /api/v1/tokens/{prefix}"
#: An error of the interpreter, not of the API: CPython 3.11 before 3.11.8 may raise it in
#: ``ast.parse`` under threads (python/cpython#106905), which Hypothesis calls to describe a
#: lambda. It makes Schemathesis report an error for the operation being generated.
INTERPRETER_BUG = "AST constructor recursion depth mismatch"


@pytest.fixture(scope="module")
def web() -> Iterator[Web]:
    with running() as process:
        yield process


def schemathesis(web: Web, report: str, *options: str) -> subprocess.CompletedProcess[str]:
    secret = token("admin", f"schemathesis-{report}")[1]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        f"{web.url}/api/v1/openapi.json",
        f"--url={web.url}",
        f"--header=Authorization: Bearer {secret}",
        f"--checks={CHECKS}",
        "--max-examples=10",
        "--workers=2",
        "--request-timeout=10",
        "--no-shrink",
        "--report=junit",
        f"--report-junit-path={ARTIFACTS / f'{report}.xml'}",
        *options,
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=150)
    (ARTIFACTS / f"{report}.log").write_text(done.stdout + done.stderr)
    return done


def problems(report: str) -> tuple[list[str], list[str]]:
    """(failed checks, errors of the tool) in a run's JUnit report, one line each."""
    failures, errors = [], []
    for case in ElementTree.parse(ARTIFACTS / f"{report}.xml").iter("testcase"):
        for child in case:
            line = f"{case.get('name')}: {child.get('message')} {(child.text or '')[:2000]}"
            if child.tag == "failure":
                failures.append(line)
            elif child.tag == "error":
                errors.append(line)
    return failures, errors


def assert_clean(done: subprocess.CompletedProcess[str], report: str) -> str:
    """Nothing failed a check, and the tool met no error but the interpreter's known one."""
    output = done.stdout + done.stderr
    failures, errors = problems(report)
    assert not failures, "\n".join(failures) + "\n" + output[-4000:]
    assert all(INTERPRETER_BUG in error for error in errors), "\n".join(errors)
    assert done.returncode == 0 or errors, output[-8000:]
    assert "Test cases:" in output and " generated" in output, output[-8000:]
    return output


def test_no_operation_answers_5xx_or_off_its_schema(web: Web) -> None:
    done = schemathesis(web, "all", f"--exclude-name={REVOKE}", "--max-time=25")
    output = assert_clean(done, "all")
    document = Api(web.url, token("read")[1]).ok("GET", "/openapi.json")
    operations = sum(len(methods) for methods in document["paths"].values())
    assert f"Tested: {operations - 1}" in output, output[-8000:]
    # The token stayed valid throughout, so the run reached the API's own logic.
    assert "returned only 401/403" not in output, output[-8000:]


def test_revoking_tokens_answers_no_5xx_or_off_its_schema(web: Web) -> None:
    done = schemathesis(web, "revoke", f"--include-name={REVOKE}", "--max-time=5")
    assert "Tested: 1" in assert_clean(done, "revoke")
