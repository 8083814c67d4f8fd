"""A test plugin with a misspelled hook name."""

from __future__ import annotations

import crossdock


@crossdock.hookimpl
def crossdock_destination_type():
    return []
