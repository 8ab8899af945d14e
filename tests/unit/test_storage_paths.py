"""Stored names stay inside the storage root, and download tokens refuse any change.

Names and tokens are checked by pure functions (:mod:`app.storage.names`,
:mod:`app.storage.links`) before any disk or database access; the symbolic-link cases
use a temporary directory, no server.
"""

from __future__ import annotations

import string
import uuid
from datetime import date
from pathlib import Path

import pytest

from app.errors import InvalidLink, InvalidStorageName
from app.storage import links, names
from config.settings import PROJECT_ROOT, StorageSettings

SECRET = "unit-test-secret-of-a-reasonable-length"
FILE_ID = uuid.UUID("3f2a9c4e-1b7d-4e8f-a0c2-5d6e7f8091ab")
EXPIRES_S = 1_796_054_400  # 2026-12-01T00:00:00Z
BASE64URL = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"


@pytest.mark.parametrize(
    "name",
    [
        "inventory.csv",
        "reports/2026-12-02/inventory.csv",
        "exports/customers v2.csv",
        "exports/a.b.c",
        "naïve/отчёт.pdf",
        "a" * 255 + "/b",
    ],
)
def test_a_plain_relative_path_is_a_name(name: str) -> None:
    assert names.check(name) == name


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "non-empty"),
        ("/etc/passwd", "absolute path"),
        ("//server/share", "absolute path"),
        ("..", "'..'"),
        ("../secrets.txt", "'..'"),
        ("reports/../../etc/passwd", "'..'"),
        ("reports/..", "'..'"),
        ("report\x00.csv", "NUL"),
        ("reports/\x00", "NUL"),
        ("reports//x.csv", "empty part"),
        ("reports/", "empty part"),
        ("./x.csv", "begins with a dot"),
        (".partial/x.part", "begins with a dot"),
        ("reports/.hidden", "begins with a dot"),
        ("reports\\..\\x", "'\\'"),
        ("C:\\Windows\\x", "'\\'"),
        ("reports/line\nbreak.csv", "control character"),
        ("a" * 256, "over 255 bytes"),
        ("a/" * 600, "longer than 1024"),
    ],
)
def test_a_name_that_could_leave_the_root_is_refused_naming_it(name: str, reason: str) -> None:
    with pytest.raises(InvalidStorageName) as refused:
        names.check(name)
    assert repr(name)[:40].rstrip("'") in str(refused.value)
    assert reason in str(refused.value)
    assert isinstance(refused.value, ValueError)


def test_a_name_resolves_under_the_root(tmp_path: Path) -> None:
    assert names.resolve(tmp_path, "reports/2026-12-02/x.csv") == (
        tmp_path.resolve() / "reports" / "2026-12-02" / "x.csv"
    )


def test_a_name_through_a_symbolic_link_out_of_the_root_is_refused(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "reports").symlink_to(outside, target_is_directory=True)
    (root / "inside").symlink_to(root / "reports" / "..", target_is_directory=True)
    with pytest.raises(InvalidStorageName, match="resolves outside the storage root"):
        names.resolve(root, "reports/x.csv")
    with pytest.raises(InvalidStorageName, match="resolves outside the storage root"):
        names.resolve(root, "inside/outside/x.csv")


def test_a_root_that_is_itself_a_symbolic_link_still_holds_its_names(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "root").symlink_to(tmp_path / "real", target_is_directory=True)
    assert names.resolve(tmp_path / "root", "a/b.csv") == (tmp_path / "real" / "a" / "b.csv")


def test_a_prefix_is_the_start_of_a_name_or_nothing() -> None:
    assert names.check_prefix("") == ""
    assert names.check_prefix("reports/") == "reports/"
    assert names.check_prefix("reports/2026-12") == "reports/2026-12"
    for prefix in ("../", "/", "/etc", "reports/../", "a\x00"):
        with pytest.raises(InvalidStorageName):
            names.check_prefix(prefix)


def test_a_dated_name_puts_the_file_in_its_day_folder() -> None:
    assert names.dated("reports", "inventory.csv", date(2026, 12, 2)) == (
        "reports/2026-12-02/inventory.csv"
    )
    assert names.dated("/exports/", "a.csv", date(2026, 1, 5)) == "exports/2026-01-05/a.csv"
    with pytest.raises(InvalidStorageName):
        names.dated("reports", "../../x", date(2026, 12, 2))


def test_a_relative_storage_root_is_taken_from_the_project_directory(tmp_path: Path) -> None:
    assert StorageSettings().root == PROJECT_ROOT / "var" / "storage"
    assert StorageSettings(root=Path("var/elsewhere")).root == PROJECT_ROOT / "var" / "elsewhere"
    assert StorageSettings(root=tmp_path).root == tmp_path


def test_a_token_verifies_to_the_id_it_was_signed_for() -> None:
    token = links.sign(FILE_ID, EXPIRES_S, SECRET)
    assert token.startswith(f"{FILE_ID.hex}.{EXPIRES_S}.")
    assert links.verify(token, SECRET, now_s=EXPIRES_S - 1) == FILE_ID


@pytest.mark.parametrize("now_s", [EXPIRES_S, EXPIRES_S + 0.5, EXPIRES_S + 86400 * 365])
def test_a_token_at_or_past_its_expiry_is_refused_as_expired(now_s: float) -> None:
    token = links.sign(FILE_ID, EXPIRES_S, SECRET)
    with pytest.raises(InvalidLink) as refused:
        links.verify(token, SECRET, now_s=now_s)
    assert refused.value.reason == links.EXPIRED


def _changed(char: str) -> list[str]:
    """Other characters a token's character could be altered to: a neighbour in the
    base64url alphabet (in the last character, base64's spare low bits), and a case flip."""
    alphabet = BASE64URL
    others = [alphabet[(alphabet.index(char) + 1) % len(alphabet)]] if char in alphabet else ["0"]
    if char.swapcase() != char:
        others.append(char.swapcase())
    return [other for other in others if other != char]


def test_changing_any_one_character_of_a_token_refuses_it() -> None:
    token = links.sign(FILE_ID, EXPIRES_S, SECRET)
    tried = 0
    for index, char in enumerate(token):
        for other in _changed(char):
            altered = token[:index] + other + token[index + 1 :]
            with pytest.raises(InvalidLink) as refused:
                links.verify(altered, SECRET, now_s=EXPIRES_S - 1)
            assert refused.value.reason in (links.TAMPERED, links.MALFORMED), (index, altered)
            tried += 1
    assert tried > len(token)


def test_a_later_expiry_written_into_a_token_is_refused_as_tampered() -> None:
    token = links.sign(FILE_ID, EXPIRES_S, SECRET)
    stretched = token.replace(f".{EXPIRES_S}.", f".{EXPIRES_S + 86400}.")
    with pytest.raises(InvalidLink) as refused:
        links.verify(stretched, SECRET, now_s=EXPIRES_S + 10)
    assert refused.value.reason == links.TAMPERED


def test_a_signature_moved_to_another_file_id_is_refused() -> None:
    token = links.sign(FILE_ID, EXPIRES_S, SECRET)
    other = uuid.uuid4()
    moved = token.replace(FILE_ID.hex, other.hex)
    with pytest.raises(InvalidLink) as refused:
        links.verify(moved, SECRET, now_s=EXPIRES_S - 1)
    assert refused.value.reason == links.TAMPERED
    # The other file's own token differs: the signature covers the id.
    assert links.sign(other, EXPIRES_S, SECRET).rsplit(".", 1)[1] != token.rsplit(".", 1)[1]


def test_a_token_signed_with_another_secret_is_refused() -> None:
    token = links.sign(FILE_ID, EXPIRES_S, "another-deployment-secret")
    with pytest.raises(InvalidLink) as refused:
        links.verify(token, SECRET, now_s=EXPIRES_S - 1)
    assert refused.value.reason == links.TAMPERED


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not-a-token",
        f"{FILE_ID}.{EXPIRES_S}.{'A' * 43}",  # the id with dashes
        f"{FILE_ID.hex.upper()}.{EXPIRES_S}.{'A' * 43}",
        f"{FILE_ID.hex}.0{EXPIRES_S}.{'A' * 43}",  # a second spelling of the expiry
        f"{FILE_ID.hex}.{EXPIRES_S}.{'A' * 43}=",
        f"{FILE_ID.hex}.{EXPIRES_S}.{'A' * 42}",
        f"{FILE_ID.hex}.{EXPIRES_S}",
        f"{FILE_ID.hex}.-5.{'A' * 43}",
        f"{FILE_ID.hex}.{EXPIRES_S}.{'A' * 43}\n",
    ],
)
def test_anything_but_a_token_is_refused_as_malformed(token: str) -> None:
    with pytest.raises(InvalidLink) as refused:
        links.verify(token, SECRET, now_s=0)
    assert refused.value.reason == links.MALFORMED


def test_a_secret_is_required_to_sign() -> None:
    with pytest.raises(ValueError, match="secret"):
        links.sign(FILE_ID, EXPIRES_S, "")
