"""Crossdock plugin for Product Fruits (distribution ``crossdock-productfruits``).

Declares the ``productfruits`` destination: identify and track events POSTed to the Webhook
URL of Product Fruits' Segment integration, one Segment message per request, signed with the
Webhook Secret (``X-Signature``, HMAC-SHA1) exactly as Segment's Webhooks destination does.

Product Fruits' own analytics events (tours, checklists, announcements, hints, surveys,
feedback) arrive through the ordinary ``segment`` source; :mod:`crossdock_productfruits.events`
recognises them, the destination never sends them back, and the JMESPath function
``is_product_fruits_event(@)`` (registered when the plugin loads) lets any destination's
``where`` or mapping use the same rule, e.g. to flag them for Segment.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp

import crossdock
from crossdock_productfruits.deliverer import ProductFruitsDeliverer
from crossdock_productfruits.events import is_product_fruits_event
from crossdock_productfruits.settings import ProductFruitsSettings
from crossdock_productfruits.transform import ProductFruitsTransformer, make_transformer

__all__ = [
    "DESTINATION_TYPE",
    "NAME",
    "ProductFruitsDeliverer",
    "ProductFruitsSettings",
    "ProductFruitsTransformer",
    "crossdock_destination_types",
    "crossdock_make_deliverer",
    "crossdock_make_transformer",
    "is_product_fruits_event",
]

NAME = "productfruits"
JMES_FUNCTION = "is_product_fruits_event"


def _jmes_is_product_fruits_event(event: Any) -> bool:
    return isinstance(event, Mapping) and is_product_fruits_event(event)


crossdock.register_function(JMES_FUNCTION, _jmes_is_product_fruits_event, ["any"], replace=True)

_MAPPING = crossdock.load_mapping_file(__name__)

DESTINATION_TYPE = crossdock.DestinationType(
    name=NAME,
    settings=ProductFruitsSettings,
    description="Product Fruits (Segment-format webhook intake, signed like Segment)",
    mapping=_MAPPING.fields,
    tables=_MAPPING.tables,
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
def crossdock_make_transformer(
    destination: crossdock.Destination,
) -> ProductFruitsTransformer | None:
    """Build the transformer: the mapping behind the identify/track, no-loop and identity gates."""
    if destination.plugin != NAME:
        return None
    return make_transformer(destination)


@crossdock.hookimpl
def crossdock_make_deliverer(
    destination: crossdock.Destination, http: aiohttp.ClientSession
) -> ProductFruitsDeliverer | None:
    """Build the deliverer of a ``productfruits`` destination."""
    if destination.plugin != NAME:
        return None
    return ProductFruitsDeliverer(destination.settings, http)
