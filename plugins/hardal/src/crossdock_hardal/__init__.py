"""Crossdock source plugin for Hardal's Custom API destination.

One Custom API destination in Hardal posts every event to the source's path (default
``/hooks/hardal``) with ``Authorization: Bearer <token>``; the source turns each Hardal event
into Spec messages with its mapping file (``mapping.toml``: page views, the e-commerce events,
sign-up/login as identify + track, anything else a track keeping its name), which operators
override from ``[sources.mapping]`` and ``[sources.tables.*]``. See the README.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import crossdock
from crossdock_hardal.functions import FUNCTIONS
from crossdock_hardal.ingestor import DEFAULT_PATH, HardalIngestor
from crossdock_hardal.settings import HardalSettings

__all__ = ["FUNCTIONS", "MAPPING", "SOURCE_TYPE", "HardalIngestor", "HardalSettings"]

MAPPING: Final = crossdock.load_mapping_file(__name__, functions=FUNCTIONS)
"""The default mapping (``mapping.toml``): Hardal event → Spec message."""

SOURCE_TYPE: Final = crossdock.SourceType(
    name="hardal",
    settings=HardalSettings,
    description="Hardal's Custom API destination (one destination forwards every event)",
    mapping=MAPPING,
    default_path=DEFAULT_PATH,
    functions=FUNCTIONS,
)


@crossdock.hookimpl
def crossdock_source_types() -> Iterable[crossdock.SourceType]:
    """Declare the ``hardal`` source type."""
    return [SOURCE_TYPE]


@crossdock.hookimpl
def crossdock_make_ingestor(source: crossdock.Source) -> HardalIngestor:
    """Build the ingestor of a ``hardal`` source (its mapping compiled once)."""
    return HardalIngestor.create(source)
