"""A working test plugin: one source type and one destination type."""

from __future__ import annotations

from attrs import frozen

import crossdock


@frozen
class GoodSettings:
    """Settings of the fake destination."""

    api_key: crossdock.Secret


@frozen
class GoodSourceSettings:
    """Settings of the fake source."""

    token: str = ""


class GoodDeliverer:
    """Delivers nothing, accepts everything."""

    async def deliver(self, batch):
        return [crossdock.DELIVERED for _ in batch]

    async def close(self):
        return None


@crossdock.hookimpl
def crossdock_source_types():
    return [crossdock.SourceType("fakegood-in", GoodSourceSettings, "fake source")]


@crossdock.hookimpl
def crossdock_destination_types():
    return [crossdock.DestinationType("fakegood", GoodSettings, "fake destination")]


@crossdock.hookimpl
def crossdock_make_deliverer(destination, http):
    return GoodDeliverer()
