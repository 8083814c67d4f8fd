"""The SQLite queue's in-memory messageId index over the append-only ``dedupe`` log.

The log (``dedupe(id, message_id, seen_at)``, no index on ``message_id``) is written in
arrival order, so a commit appends its ids at the right edge of one b-tree instead of
dirtying a random index page per id. Whether an id was seen is answered here, in memory:

- **Generations.** Open-addressing tables (linear probing) in ``array('Q')``, all of
  ``2**bits`` slots, each filled to :data:`LOAD` and then closed; a new one takes the next ids.
  A generation covers a contiguous range of log rowids and is dropped whole once every rowid
  in it is below the log's lowest rowid (the cap and the age pruning delete from the low end),
  so there are no tombstones and no rebuild while running.
- **Slots.** ``(tag << bits) | (rowid - start + 1)`` in a slot of 32 bits (64 when a
  generation has more than ``2**22`` slots, i.e. ``dedupe_max`` above about 10 M): the row's
  offset in its generation in the low ``bits`` bits, and as tag the top ``32 - bits`` (or
  ``64 - bits``) bits of the id's 64-bit ``hash()`` (SipHash, seeded per process; the index
  never leaves the process) multiplied by :data:`_MIX`; ``0`` is an empty slot. A lookup
  compares tags only and returns the rowids whose tags match; the caller reads those rows
  to compare the full id and ``seen_at``, so a tag collision (one in ``2**11`` per probed
  slot at the default window, and only for the few ids the filter lets through) costs a
  rowid lookup, never a false duplicate.
- **Filter.** One two-bit Bloom filter for all generations, a byte per position and a bit
  per generation in each byte (its *lane*): an id sets its two positions' bits in its
  generation's lane, with hash bits the slot index does not use. A lookup ANDs its two bytes
  and probes only the generations whose lane survives: nearly every id a lookup sees is new,
  and for about 73 % of them on a full window (five generations) no generation needs a
  probe. A filter per generation cost a test per generation: 1.7-2.0 us of Python per new
  id on a full window, in the writer thread, holding the GIL the event loop needs; one AND
  brings it to 0.7-0.9 us. A filter never says no for an id its generation holds. A
  generation that goes clears its lane in one pass (``bytearray.translate``, about 6 ms
  for the default 8 MiB, once per 1.26 M ids); with all eight lanes taken (many small
  generations, from other processes' gaps) a new one has none and is always probed.
- **Memory.** 4 bytes per slot at :data:`LOAD` = 6.7 bytes per id while a generation fills,
  plus the filter: 4 bytes per slot of one generation. A generation holds about
  ``dedupe_max / 4`` ids, so at most five are alive (four full plus the one filling).
  Default ``dedupe_max`` (5 M ids): 2**21 slots (8 MiB) per generation, holding 1.26 M ids
  each, and an 8 MiB filter; a full window keeps four or five alive: 40-48 MiB, 8-9.6 bytes
  per id (:func:`memory_bytes` gives the bound for any ``dedupe_max``). The daemon's RSS bound
  under a backlog (150 MiB, issue 12) is why the slots are 32 bits: 64-bit ones took twice
  this.
- **Start.** Rebuilt from the log by one sequential scan (:meth:`DedupeIndex.add_many`).
"""

from __future__ import annotations

from array import array

__all__ = ["LOAD", "DedupeIndex"]

LOAD = 0.6
"""Fraction of a generation's slots filled before the next generation starts."""

_M64 = (1 << 64) - 1
_MIX = 0x9E3779B97F4A7C15
"""Odd multiplier (2**64 / golden ratio): the tag is the top bits of ``hash * _MIX``, so it
does not repeat the hash's top bits the filter already tested (a correlated tag would let
an id that passed the filter match a tag far more often)."""
_MIN_BITS = 10
_NARROW_MAX_BITS = 22
"""Generations of up to ``2**22`` slots use 32-bit slots (a tag of at least 10 bits)."""
_GENERATIONS = 4
"""``dedupe_max`` is spread over about this many full generations."""
_FILTER_BITS_PER_SLOT_LOG2 = 2
"""The filter has four times as many positions (bytes) as a generation has slots."""
_LANES = 8
"""Generations the filter tells apart (a bit of each position's byte each)."""
_CLEAR_LANE = [bytes(b & ~(1 << lane) & 0xFF for b in range(256)) for lane in range(_LANES)]
"""``bytearray.translate`` tables that clear one lane's bit in every byte."""


def slot_bits(dedupe_max: int) -> int:
    """log2 of a generation's slots for a window of ``dedupe_max`` ids."""
    want = max(1, dedupe_max) / _GENERATIONS / LOAD
    return max(_MIN_BITS, (int(want) - 1).bit_length())


def _slot_bytes(bits: int) -> int:
    return 4 if bits <= _NARROW_MAX_BITS else 8


def memory_bytes(dedupe_max: int) -> int:
    """Most bytes the index takes for a window of ``dedupe_max`` ids (all generations alive)."""
    bits = slot_bits(dedupe_max)
    per_gen = int((1 << bits) * LOAD)
    gens = -(-dedupe_max // per_gen) + 1
    return gens * (1 << bits) * _slot_bytes(bits) + _filter_bytes(bits)


def _filter_bytes(bits: int) -> int:
    return 1 << (bits + _FILTER_BITS_PER_SLOT_LOG2)


class _Generation:
    __slots__ = ("count", "end", "lane", "start", "table")

    def __init__(self, start: int, bits: int, lane: int) -> None:
        self.start = start  # first rowid it may hold
        self.end = start - 1  # last rowid it holds
        self.count = 0
        self.lane = lane  # its bit in the filter's bytes; 0: none (always probed)
        self.table = array(
            "I" if bits <= _NARROW_MAX_BITS else "Q", bytes(_slot_bytes(bits) << bits)
        )


class DedupeIndex:
    """Exact set of log rowids by messageId hash; see the module docstring."""

    def __init__(self, dedupe_max: int) -> None:
        bits = slot_bits(dedupe_max)
        self._bits = bits
        self._slots = 1 << bits
        self._mask = self._slots - 1
        # Filter bit numbers: hash bits above the slot index, and the top bits.
        fbits = bits + _FILTER_BITS_PER_SLOT_LOG2
        self._fmask = (1 << fbits) - 1
        self._fshift = 64 - fbits
        self._per_gen = int(self._slots * LOAD)
        width = 8 * _slot_bytes(bits)
        self._tshift = 64 - (width - bits)  # the tag: the hash's top ``width - bits`` bits
        self._gens: list[_Generation] = []  # oldest first
        self._filter = bytearray(_filter_bytes(bits))
        self._free_lanes = [1 << lane for lane in range(_LANES)]
        self._laneless = 0  # generations without a lane (every lookup probes them)
        self.last = 0
        """Highest log rowid indexed: rows above it are read by the next catch-up."""
        self.low = 0
        """Lowest rowid still in the log (as last read): slots below it are dead."""

    def __len__(self) -> int:
        return sum(g.count for g in self._gens)

    def memory(self) -> int:
        """Bytes held by the slot tables and the filter."""
        return len(self._gens) * self._slots * _slot_bytes(self._bits) + len(self._filter)

    def _filter_positions(self, h: int) -> tuple[int, int]:
        """The two filter positions (byte offsets) of hash ``h``."""
        return (h >> self._bits) & self._fmask, h >> self._fshift

    def lookup(self, mid: str) -> list[int]:
        """Rowids (>= :attr:`low`) whose tag matches ``mid``'s, newest first; usually none."""
        h = hash(mid) & _M64
        bloom = self._filter
        lanes = bloom[(h >> self._bits) & self._fmask] & bloom[h >> self._fshift]
        if not lanes and not self._laneless:  # no generation may hold it
            return []
        bits = self._bits
        tag = ((h * _MIX) & _M64) >> self._tshift
        mask = self._mask
        low = self.low
        found: list[int] = []
        for gen in reversed(self._gens):
            lane = gen.lane
            if lane and not lanes & lane:
                continue
            table = gen.table
            i = h & mask
            s = table[i]
            while s:
                if s >> bits == tag:
                    rowid = gen.start - 1 + (s & mask)
                    if rowid >= low:
                        found.append(rowid)
                i = (i + 1) & mask
                s = table[i]
        return found

    def add_many(self, rowid: int, mids: list[str]) -> None:
        """Index ``mids`` as the log rows ``rowid``, ``rowid + 1``, …"""
        mask = self._mask
        gens = self._gens
        gen = gens[-1] if gens else None
        bits, fmask, fshift, tshift = self._bits, self._fmask, self._fshift, self._tshift
        bloom = self._filter
        lane = gen.lane if gen is not None else 0
        for mid in mids:
            # the offset must fit in ``bits`` bits (rows of other processes leave gaps)
            if gen is None or gen.count >= self._per_gen or rowid - gen.start >= mask:
                free = self._free_lanes
                lane = free.pop(0) if free else 0
                if not lane:
                    self._laneless += 1
                gen = _Generation(rowid, self._bits, lane)
                gens.append(gen)
            h = hash(mid) & _M64
            if lane:
                bloom[(h >> bits) & fmask] |= lane
                bloom[h >> fshift] |= lane
            table = gen.table
            i = h & mask
            while table[i]:
                i = (i + 1) & mask
            table[i] = ((((h * _MIX) & _M64) >> tshift) << bits) | (rowid - gen.start + 1)
            gen.count += 1
            gen.end = rowid
            rowid += 1
        if rowid - 1 > self.last:
            self.last = rowid - 1

    def add_rows(self, rowids: list[int], mids: list[str]) -> None:
        """Index rows read from the log (ascending rowids, gaps allowed)."""
        start = 0
        for k in range(1, len(rowids) + 1):
            if k == len(rowids) or rowids[k] != rowids[k - 1] + 1:
                self.add_many(rowids[start], mids[start:k])
                start = k

    def expire(self, low: int) -> None:
        """Every log rowid below ``low`` is gone: drop the generations wholly below it."""
        self.low = max(self.low, low)
        while self._gens and self._gens[0].end < self.low:
            lane = self._gens.pop(0).lane
            if lane:
                self._filter = self._filter.translate(_CLEAR_LANE[lane.bit_length() - 1])
                self._free_lanes.append(lane)
            else:
                self._laneless -= 1
