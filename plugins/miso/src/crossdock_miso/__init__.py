"""Crossdock destination ``miso``: Segment events → Miso's Interaction Upload API.

The default mapping (``mapping.toml``) turns the Segment e-commerce events of Miso's own
Segment integration table into interactions (``search``, ``product_detail_page_view``,
``add_to_cart``, ``checkout``, …); other events are dropped on purpose. Its JMESPath
functions (:data:`~.functions.FUNCTIONS`) are declared with the type. See the README.
"""

from __future__ import annotations

import aiohttp

import crossdock

from .deliverer import MisoDeliverer
from .functions import FUNCTIONS
from .settings import MisoSettings
from .transform import MisoTransformer

__all__ = [
    "DESTINATION_TYPE",
    "FUNCTIONS",
    "NAME",
    "MisoDeliverer",
    "MisoSettings",
    "MisoTransformer",
]

NAME = "miso"

_MAPPING = crossdock.load_mapping_file(__name__, functions=FUNCTIONS)

DESTINATION_TYPE = crossdock.DestinationType(
    name=NAME,
    settings=MisoSettings,
    description="Miso interactions (POST /v1/interactions) from Segment e-commerce events",
    mapping=_MAPPING,
    functions=FUNCTIONS,
    # Miso advises at most ~10,000 records per call and publishes no byte limit; 1,000 keeps
    # a request short enough that timeouts (and so double-counted retries) stay rare.
    limits=crossdock.Limits(
        max_batch_count=1000, max_batch_bytes=4 * 1024 * 1024, max_event_bytes=256 * 1024
    ),
)


@crossdock.hookimpl
def crossdock_destination_types() -> list[crossdock.DestinationType]:
    """Declare the ``miso`` destination type."""
    return [DESTINATION_TYPE]


@crossdock.hookimpl
def crossdock_make_transformer(destination: crossdock.Destination) -> MisoTransformer:
    """Build the transformer of a ``miso`` destination (the mapping, then Miso's strict types;
    see :mod:`.transform` for why this is not the core's default transformer)."""
    return MisoTransformer(destination)


@crossdock.hookimpl
def crossdock_make_deliverer(
    destination: crossdock.Destination, http: aiohttp.ClientSession
) -> MisoDeliverer:
    """Build the deliverer of a ``miso`` destination."""
    return MisoDeliverer(destination.settings, http)
