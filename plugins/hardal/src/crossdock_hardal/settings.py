"""Settings of a ``hardal`` source (the keys of its ``[[sources]]`` table)."""

from __future__ import annotations

from attrs import frozen

import crossdock


@frozen
class HardalSettings:
    """``token``: the operator's shared token; Hardal's Custom API destination sends it as
    ``Authorization: Bearer <token>`` (an additional header). Compared in constant time."""

    token: crossdock.Secret
