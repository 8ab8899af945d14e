"""The sample catalog as a user meets it: ``catalog seed`` run as a command, and search
through a live web process with a ``read`` token.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from app.catalog import search, seed, store
from app.db import engine
from app.runner import CATALOG_SEED
from tests.acceptance.api_support import Api, running, token
from tests.acceptance.workers import ROOT, Web
from tests.catalog_support import empty_catalog_tables

pytestmark = pytest.mark.acceptance


def counts() -> dict[str, int]:
    with engine().connect() as conn:
        return store.counts(conn)


def app_command(*args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    """``python -m app ARGS`` as a user types it, on this run's database."""
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


@pytest.fixture(scope="module")
def web() -> Iterator[Web]:
    with running(worker=False, beat=False) as process:
        yield process


@pytest.fixture(scope="module")
def reader(web: Web) -> Api:
    return Api(web.url, token("read", "catalog-reader")[1])


@pytest.fixture
def catalog() -> Iterator[None]:
    """A small seeded catalog, indexed, where "quokka" is in one name and one description."""
    empty_catalog_tables()
    seed.seed(300, rng_seed=11)
    with engine().begin() as conn:
        store.update_product(conn, 12, description="A favourite of every quokka we asked.")
        store.update_product(conn, 34, name="Quokka Reading Lamp")
    search.sync_stored()
    yield
    empty_catalog_tables()


def test_seeding_ten_thousand_products_from_the_command_line_completes_well_within_a_minute() -> (
    None
):
    empty_catalog_tables()
    started = time.monotonic()
    done = app_command("catalog", "seed", "--products", "10000", "--seed", "1", timeout_s=120)
    elapsed_s = time.monotonic() - started

    assert done.returncode == 0, done.stdout + done.stderr
    assert elapsed_s < 30, f"seeding 10,000 products took {elapsed_s:.1f}s"
    found = counts()
    assert found["products"] == found["inventory"] == found["documents"] == 10_000
    assert found["orders"] == 5000 and found["customers"] == 1000
    assert "seeded 10000 products" in done.stdout and "indexed 10000 for search" in done.stdout
    empty_catalog_tables()


def test_the_first_start_seeds_an_empty_catalog_once() -> None:
    """``make run`` calls this on every start: it seeds the first time only."""
    empty_catalog_tables()
    first = app_command(*CATALOG_SEED)
    assert first.returncode == 0, first.stderr
    assert counts()["products"] == 500

    second = app_command(*CATALOG_SEED)
    assert second.returncode == 0, second.stderr
    assert "--if-empty seeds nothing" in second.stdout and counts()["products"] == 500
    empty_catalog_tables()


def test_search_answers_ranked_matches_name_before_description(reader: Api, catalog: None) -> None:
    found: dict[str, Any] = reader.ok("GET", "/catalog/search", params={"q": "quokka"})

    assert found["q"] == "quokka"
    assert [item["id"] for item in found["items"]] == [34, 12]
    best, other = found["items"]
    assert best["name"] == "Quokka Reading Lamp" and best["rank"] > other["rank"]
    assert best["category"] and float(best["price"]) >= 1


def test_search_takes_web_search_syntax_and_a_limit(reader: Api, catalog: None) -> None:
    both = reader.ok("GET", "/catalog/search", params={"q": "quokka -lamp"})
    assert [item["id"] for item in both["items"]] == [12]
    one = reader.ok("GET", "/catalog/search", params={"q": "quokka", "limit": 1})
    assert [item["id"] for item in one["items"]] == [34]
    assert reader.ok("GET", "/catalog/search", params={"q": "the"})["items"] == []


def test_search_needs_a_token(reader: Api) -> None:
    reader.error("GET", "/catalog/search", 401, params={"q": "lamp"}, secret="cvy_wrong")
    reply = Api(reader.base).call("GET", "/catalog/search", params={"q": "lamp"})
    assert reply.status_code == 401 and reply.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("params", [{}, {"q": ""}, {"q": "   "}], ids=["missing", "empty", "blank"])
def test_search_without_words_is_a_422_naming_q(reader: Api, params: dict[str, str]) -> None:
    error = reader.error("GET", "/catalog/search", 422, params=params)
    assert error["field"] == "q" and error["message"].startswith("q: ")
