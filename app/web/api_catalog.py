"""``/catalog/search``: full-text search over the sample catalog's live products.

Answered from the catalog's search index (:mod:`app.catalog.search`), which the sync
brings up to date with products' changes: a product renamed since the last sync is
still found by its old name until the next one, and a deleted one is never shown.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.http import HttpRequest
from ninja import Field, Query, Router, Schema
from pydantic import field_validator

from app.catalog import search as catalog_search
from app.web.api_auth import needs
from app.web.api_errors import ApiError
from app.web.api_schemas import Text, errors

router = Router(tags=["catalog"])


class CatalogSearchQuery(Schema):
    """``GET /catalog/search`` query and how many results."""

    q: Text = Field(
        min_length=1,
        max_length=200,
        description='words to find, in web search syntax: "a phrase", or, -word',
    )
    limit: int = Field(20, ge=1, le=100)

    @field_validator("q")
    @classmethod
    def has_a_word(cls, value: str) -> str:
        """``q`` without the spaces around it; blank is refused."""
        if not value.strip():
            raise ValueError("give at least one word to search for")
        return value.strip()


class CatalogHitOut(Schema):
    """One live product that matches."""

    id: int
    name: str
    category: str | None
    price: Decimal = Field(description="in the shop's currency, two decimals")
    rank: float = Field(description="ts_rank of the product for the query: higher is better")


class CatalogSearchOut(Schema):
    """The best matches, best first."""

    q: str = Field(description="the query, as searched")
    items: list[CatalogHitOut]


@router.get("/catalog/search", response={200: CatalogSearchOut, **errors()}, **needs("read"))
def search(request: HttpRequest, query: Query[CatalogSearchQuery]) -> dict[str, Any]:
    """Live products matching ``q`` (name first, then description, then category), ranked
    by ``ts_rank``, then popularity; ``limit`` of them (≤ 100)."""
    try:
        hits = catalog_search.index().search(query.q, query.limit)
    except catalog_search.InvalidSearch as exc:
        raise ApiError(422, "invalid_request", str(exc), exc.argument) from None
    items = [
        {"id": h.id, "name": h.name, "category": h.category, "price": h.price, "rank": h.rank}
        for h in hits
    ]
    return {"q": query.q, "items": items}
