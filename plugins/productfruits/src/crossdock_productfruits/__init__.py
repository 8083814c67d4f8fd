"""Crossdock plugin for Product Fruits (distribution ``crossdock-productfruits``).

Declares the ``productfruits`` destination: identify and track events POSTed to the Webhook
URL of Product Fruits' Segment integration, one Segment message per request, signed with the
Webhook Secret (``X-Signature``, HMAC-SHA1) exactly as Segment's Webhooks destination does.
Which events go and what is sent is ``mapping.toml``, with the JMESPath functions of
:mod:`crossdock_productfruits.functions` declared with the type.

Product Fruits' own analytics events (tours, checklists, announcements, hints, surveys,
feedback) arrive through the ordinary ``segment`` source; :mod:`crossdock_productfruits.events`
recognises them, the destination never sends them back, and the JMESPath function
``is_product_fruits_event(@)``, shared with every mapping (``crossdock_jmespath_functions``),
lets any destination's ``where`` or mapping use the same rule, e.g. to flag them for Segment.
"""

from __future__ import annotations

import aiohttp

import crossdock
from crossdock_productfruits.deliverer import ProductFruitsDeliverer
from crossdock_productfruits.events import is_product_fruits_event
from crossdock_productfruits.functions import FUNCTIONS, IS_PRODUCT_FRUITS_EVENT
from crossdock_productfruits.settings import ProductFruitsSettings

__all__ = [
    "DESTINATION_TYPE",
    "FUNCTIONS",
    "NAME",
    "ProductFruitsDeliverer",
    "ProductFruitsSettings",
    "crossdock_destination_types",
    "crossdock_jmespath_functions",
    "crossdock_make_deliverer",
    "is_product_fruits_event",
]

NAME = "productfruits"

_MAPPING = crossdock.load_mapping_file(__name__, functions=FUNCTIONS)

DESTINATION_TYPE = crossdock.DestinationType(
    name=NAME,
    settings=ProductFruitsSettings,
    description="Product Fruits (Segment-format webhook intake, signed like Segment)",
    mapping=_MAPPING,
    functions=FUNCTIONS,
    # One Segment message per request (Product Fruits' docs do not mention batches); 32 KB is
    # the largest message Segment itself would ever forward.
    limits=crossdock.Limits(
        max_batch_count=1, max_batch_bytes=32_000, max_event_bytes=32_000, concurrency=4
    ),
)


@crossdock.hookimpl
def crossdock_destination_types() -> list[crossdock.DestinationType]:
    """Declare the ``productfruits`` destination."""
    return [DESTINATION_TYPE]


@crossdock.hookimpl
def crossdock_jmespath_functions() -> list[crossdock.JmesFunction]:
    """Share ``is_product_fruits_event(event, forced?)`` with every mapping: operators call it
    from other types' destinations, e.g. a ``segment`` destination that flags Product Fruits'
    events (``examples/productfruits-to-segment.toml``)."""
    return [IS_PRODUCT_FRUITS_EVENT]


@crossdock.hookimpl
def crossdock_make_deliverer(
    destination: crossdock.Destination, http: aiohttp.ClientSession
) -> ProductFruitsDeliverer:
    """Build the deliverer of a ``productfruits`` destination."""
    return ProductFruitsDeliverer(destination.settings, http)
