"""The garbage collector's settings for a serving daemon (``crossdock run``).

Two things cost a daemon under load collector time that buys nothing:

- What start-up loaded (modules, config, compiled mappings) lives as long as the process;
  left in the collector's generations, every full collection rescans all of it (a tenth of
  the event loop's time under ingest load before it was frozen; ``bench/ingest_profile.py``).
- A delivery batch of decoded events is thousands of young dicts and lists that live until
  the batch is settled, tens of milliseconds. With CPython's default threshold (a young
  collection every 700 net container allocations) each batch triggers a dozen collections that
  find nothing to free and promote the whole batch, which older collections then scan again:
  1.3 to 1.9 µs per delivered event, about a tenth of the process's CPU per event on a mapped
  destination (``bench/deliver_cost.py``). At 20,000 a young collection comes about once per
  several batches, by when most of their objects are gone by reference counting.

Crossdock's hot path makes almost no reference cycles (request and batch objects die by
reference count), so collecting less often leaves little garbage waiting.
"""

from __future__ import annotations

import gc
from typing import Final

YOUNG_THRESHOLD: Final = 20_000
"""Net container allocations between two young-generation collections (CPython: 700)."""


def prepare_for_serving() -> None:
    """Collect once, freeze what survived (start-up's objects) and raise the young
    generation's threshold to :data:`YOUNG_THRESHOLD`; the older generations keep theirs.
    Called by ``crossdock run`` after loading, before serving."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
