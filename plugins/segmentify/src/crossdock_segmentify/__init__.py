"""Crossdock destination ``segmentify``: Segment Spec events → Segmentify's REST events API.

Hooks: the destination type (settings, the whole default mapping from ``mapping.toml``: common
fields, one section per Segmentify event kind, the dispatch and its lookup tables; the
``segmentify_*`` JMESPath functions of :mod:`crossdock_segmentify.functions`; limits) and the
deliverer (:mod:`crossdock_segmentify.deliverer`). The core's transformer compiles the mapping;
the plugin has no Python transformer. The strict fake of the vendor for tests is
:class:`crossdock_segmentify.testing.FakeSegmentify`.
"""

from __future__ import annotations

import aiohttp

import crossdock

from .deliverer import SegmentifyDeliverer
from .functions import FUNCTIONS
from .settings import SegmentifySettings

__all__ = [
    "DESTINATION_TYPE",
    "FUNCTIONS",
    "LIMITS",
    "NAME",
    "SegmentifyDeliverer",
    "SegmentifySettings",
    "crossdock_destination_types",
    "crossdock_make_deliverer",
]

NAME = "segmentify"

LIMITS = crossdock.Limits(
    max_batch_count=50,
    max_batch_bytes=1_000_000,
    rate_limit=10.0,
    concurrency=4,
)
"""Segmentify publishes no limits; 50 events and 10 requests/s are the contract's defaults,
1 MB per request our own guard. Operators change them under ``[destinations.delivery]``."""

_MAPPING = crossdock.load_mapping_file(__name__, functions=FUNCTIONS)

DESTINATION_TYPE = crossdock.DestinationType(
    name=NAME,
    settings=SegmentifySettings,
    description="Segmentify REST events API (add/events/v1.json)",
    mapping=_MAPPING,
    limits=LIMITS,
    functions=FUNCTIONS,
)


@crossdock.hookimpl
def crossdock_destination_types() -> list[crossdock.DestinationType]:
    """Declare the ``segmentify`` destination."""
    return [DESTINATION_TYPE]


@crossdock.hookimpl
def crossdock_make_deliverer(
    destination: crossdock.Destination, http: aiohttp.ClientSession
) -> SegmentifyDeliverer:
    """Build the deliverer of a ``segmentify`` destination."""
    return SegmentifyDeliverer(destination.settings, http)
