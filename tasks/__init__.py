"""Task modules, one per concern; each task is thin and names its queue by route."""

from __future__ import annotations
