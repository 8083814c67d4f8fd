"""A test plugin declaring a destination type another plugin already declares."""

from __future__ import annotations

from attrs import frozen

import crossdock


@frozen
class DupSettings:
    """Settings."""


@crossdock.hookimpl
def crossdock_destination_types():
    return [crossdock.DestinationType("fakegood", DupSettings, "same name as crossdock-fake-good")]
