"""The default transformer: the destination's JMESPath mapping, compiled once.

Registered ``trylast`` so a plugin's own ``crossdock_make_transformer`` wins; most plugins ship
only a ``mapping.toml`` and rely on this one.
"""

from __future__ import annotations

import crossdock
from crossdock.transform.mapping import CompiledMapping, compile_mapping
from crossdock.types import Destination


@crossdock.hookimpl(trylast=True)
def crossdock_make_transformer(destination: Destination) -> CompiledMapping:
    """Compile ``destination.mapping`` with its ``where`` condition and lookup tables."""
    return compile_mapping(destination.mapping, where=destination.where, tables=destination.tables)
