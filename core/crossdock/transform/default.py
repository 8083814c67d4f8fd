"""The default transformer: the destination's whole mapping spec, compiled once.

Registered ``trylast`` so a plugin's own ``crossdock_make_transformer`` wins; most plugins ship
only a ``mapping.toml`` (common fields, sections, dispatch, tables) and the functions declared
with their type, and rely on this one.
"""

from __future__ import annotations

import crossdock
from crossdock import CompiledMapping, Destination, SectionedMapping, compile_spec


@crossdock.hookimpl(trylast=True)
def crossdock_make_transformer(destination: Destination) -> CompiledMapping | SectionedMapping:
    """Compile ``destination.spec`` with its ``where`` condition and the functions its mappings
    may call (those plugins share, then its type's own)."""
    return compile_spec(destination.spec, where=destination.where, functions=destination.functions)
