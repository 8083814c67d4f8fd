"""Crossdock destination ``insider``: Insider (Insider One) Upsert User Data API.

Identify calls become user attributes, track calls become events (one ``purchase`` per product
of an order), each event one user object; batches of up to 1,000 users and 5 MB go to
``POST {base_url}/api/user/v1/upsert``. The default mapping (``mapping.toml``: sections,
tables) and its JMESPath functions (:data:`~.functions.FUNCTIONS`, declared with the type) do
the mapping; :mod:`.transform` splits orders per product. See the README for settings, mapping
and errors.
"""

from __future__ import annotations

import aiohttp

import crossdock

from .deliverer import InsiderDeliverer
from .functions import FUNCTIONS
from .settings import DEFAULT_BASE_URL, InsiderSettings
from .transform import InsiderTransformer

__all__ = [
    "DEFAULT_BASE_URL",
    "DESTINATION_TYPE",
    "FUNCTIONS",
    "NAME",
    "InsiderDeliverer",
    "InsiderSettings",
    "InsiderTransformer",
    "crossdock_destination_types",
    "crossdock_make_deliverer",
    "crossdock_make_transformer",
]

NAME = "insider"

# 5,000,000 bytes per request (Insider's limit) minus the envelope around the user objects.
MAX_REQUEST_BYTES = 5_000_000
ENVELOPE_BYTES = 64

_MAPPING = crossdock.load_mapping_file(__name__, functions=FUNCTIONS)

DESTINATION_TYPE = crossdock.DestinationType(
    name=NAME,
    settings=InsiderSettings,
    description="Insider (Insider One) user attributes and events via the Upsert User Data API",
    mapping=_MAPPING,
    functions=FUNCTIONS,
    limits=crossdock.Limits(
        max_batch_count=1000,
        max_batch_bytes=MAX_REQUEST_BYTES - ENVELOPE_BYTES,
        max_event_bytes=MAX_REQUEST_BYTES - ENVELOPE_BYTES,
        # 25,000 requests per minute per API key, shared with Delete User Attribute.
        rate_limit=400.0,
        concurrency=4,
    ),
    backfill_settings={"skip_hook": True},
)


@crossdock.hookimpl
def crossdock_destination_types() -> list[crossdock.DestinationType]:
    """Declare the ``insider`` destination."""
    return [DESTINATION_TYPE]


@crossdock.hookimpl
def crossdock_make_transformer(destination: crossdock.Destination) -> InsiderTransformer:
    """Build the transformer of an ``insider`` destination: the compiled mapping, then one event
    per product (see :mod:`.transform` for why this is not the core's default transformer)."""
    return InsiderTransformer(destination)


@crossdock.hookimpl
def crossdock_make_deliverer(
    destination: crossdock.Destination, http: aiohttp.ClientSession
) -> InsiderDeliverer:
    """Build the deliverer of an ``insider`` destination."""
    return InsiderDeliverer(destination.settings, http)
