"""Crossdock plugin for Hull: destination ``hull`` (Firehose) and source ``hull`` (user
notifications).

Destination: Segment Spec events → Firehose entries (identify → user traits, track → user
events, page/screen → ``page``/``screen`` user events, group → account traits and the user's
account link, alias → identity merge), each signed with a per-entry HS256 JWT of its identity
claims. Events whose ``integrations`` opt Hull out are filtered (loop guard).

Source: Hull's ``user:update`` notifications → identify, group and track/page/screen messages,
each marked ``integrations: {"Hull": false}``; events that reached Hull from Segment or
Crossdock are not sent back unless ``forward_events``.
"""

from __future__ import annotations

from collections.abc import Iterable

import aiohttp

import crossdock
from crossdock_hull.deliverer import HullDeliverer
from crossdock_hull.functions import FUNCTIONS
from crossdock_hull.ingestor import DEFAULT_PATH, HullIngestor
from crossdock_hull.renamed import RENAMED
from crossdock_hull.settings import HullDestinationSettings, HullSourceSettings
from crossdock_hull.transform import HullTransformer, make_transformer

__all__ = [
    "DESTINATION_TYPE",
    "FUNCTIONS",
    "NAME",
    "RENAMED",
    "SOURCE_TYPE",
    "HullDeliverer",
    "HullDestinationSettings",
    "HullIngestor",
    "HullSourceSettings",
    "HullTransformer",
]

NAME = "hull"

DESTINATION_TYPE = crossdock.DestinationType(
    name=NAME,
    settings=HullDestinationSettings,
    description="Hull's Firehose: user traits, user events, accounts and aliases",
    mapping=crossdock.load_mapping_file(__name__, functions=FUNCTIONS),
    functions=FUNCTIONS,
    # the override keys before 0.2 (fields the entry was built from), for one minor version
    renamed=RENAMED,
    limits=crossdock.Limits(
        max_batch_count=100,
        # The Firehose publishes no limit; requests stay under 1 MB. Each entry gains a JWT
        # (a few hundred bytes) on the wire, hence the margin below 1 MB.
        max_batch_bytes=800_000,
        max_event_bytes=200_000,
        concurrency=4,
    ),
)

SOURCE_TYPE = crossdock.SourceType(
    name=NAME,
    settings=HullSourceSettings,
    description="Hull user-update notifications (smart notifier) as identify/group/track",
    default_path=DEFAULT_PATH,
)


@crossdock.hookimpl
def crossdock_destination_types() -> Iterable[crossdock.DestinationType]:
    """Declare the ``hull`` destination."""
    return [DESTINATION_TYPE]


@crossdock.hookimpl
def crossdock_source_types() -> Iterable[crossdock.SourceType]:
    """Declare the ``hull`` source."""
    return [SOURCE_TYPE]


@crossdock.hookimpl
def crossdock_make_transformer(destination: crossdock.Destination) -> HullTransformer:
    """Build the transformer of a ``hull`` destination: its mapping, filtered events and entry
    checks (see :mod:`crossdock_hull.transform`)."""
    return make_transformer(destination)


@crossdock.hookimpl
def crossdock_make_deliverer(
    destination: crossdock.Destination, http: aiohttp.ClientSession
) -> HullDeliverer:
    """Build the deliverer of a ``hull`` destination."""
    return HullDeliverer(destination.settings, http)


@crossdock.hookimpl
def crossdock_make_ingestor(source: crossdock.Source) -> HullIngestor:
    """Build the ingestor of a ``hull`` source."""
    return HullIngestor(source)
