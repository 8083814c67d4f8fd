"""Crossdock destination ``segmentify``: Segment Spec events → Segmentify's REST events API.

Hooks: the destination type (settings, default mapping and lookup tables from
``mapping.toml``, limits), a transformer that picks the Segmentify event kind of each event
(:mod:`crossdock_segmentify.transform`) and the deliverer
(:mod:`crossdock_segmentify.deliverer`). The strict fake of the vendor for tests is
:class:`crossdock_segmentify.testing.FakeSegmentify`.
"""

from __future__ import annotations

import aiohttp

import crossdock

from . import functions
from .deliverer import SegmentifyDeliverer
from .settings import SegmentifySettings
from .transform import SegmentifyTransformer

__all__ = [
    "DESTINATION_TYPE",
    "LIMITS",
    "NAME",
    "SegmentifyDeliverer",
    "SegmentifySettings",
    "SegmentifyTransformer",
    "crossdock_destination_types",
    "crossdock_make_deliverer",
    "crossdock_make_transformer",
]

NAME = "segmentify"

# Registered before the mapping file is read: its expressions call these functions.
functions.register()

LIMITS = crossdock.Limits(
    max_batch_count=50,
    max_batch_bytes=1_000_000,
    rate_limit=10.0,
    concurrency=4,
)
"""Segmentify publishes no limits; 50 events and 10 requests/s are the contract's defaults,
1 MB per request our own guard. Operators change them under ``[destinations.delivery]``."""

_MAPPING = crossdock.load_mapping_file(__name__)

DESTINATION_TYPE = crossdock.DestinationType(
    name=NAME,
    settings=SegmentifySettings,
    description="Segmentify REST events API (add/events/v1.json)",
    mapping=_MAPPING.fields,
    tables=_MAPPING.tables,
    limits=LIMITS,
)


@crossdock.hookimpl
def crossdock_destination_types() -> list[crossdock.DestinationType]:
    """Declare the ``segmentify`` destination."""
    return [DESTINATION_TYPE]


@crossdock.hookimpl
def crossdock_make_transformer(
    destination: crossdock.Destination,
) -> SegmentifyTransformer | None:
    """Build the per-kind transformer of a ``segmentify`` destination."""
    if destination.plugin != NAME:
        return None
    return SegmentifyTransformer(destination)


@crossdock.hookimpl
def crossdock_make_deliverer(
    destination: crossdock.Destination, http: aiohttp.ClientSession
) -> SegmentifyDeliverer | None:
    """Build the deliverer of a ``segmentify`` destination."""
    if destination.plugin != NAME:
        return None
    return SegmentifyDeliverer(destination.settings, http)
