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
  slot at the default window, and only for the ~7 % of ids the filter lets through) costs a
  rowid lookup, never a false duplicate.
- **Filters.** Each generation also has a two-bit Bloom filter of 4 bits per slot (half a
  byte), set from hash bits the slot index does not use. Nearly every id a lookup sees
  is new, and probing four full generations for it cost 2.1 µs of Python per id in the
  writer thread (holding the GIL the event loop needs; 6.6 µs on a busy machine); a filter
  answers "not in this generation" for all but about 7 % of them, so a new id costs 1.0 µs
  (0.3 µs more to index it). A filter never says no for an id its generation holds.
- **Memory.** 4.5 bytes per slot at :data:`LOAD` = 7.5 bytes per id while a generation
  fills; a generation holds about ``dedupe_max / 4`` ids, so at most five are alive (four
  full plus the one filling). Default ``dedupe_max`` (5 M ids): 2**21 slots (8 MiB + 1 MiB
  of filter) per generation, holding 1.26 M ids each; a full window keeps four or five alive:
  36-45 MiB, 7.5-9.4 bytes per id (:func:`memory_bytes` gives the bound for any
  ``dedupe_max``). The daemon's RSS bound under a backlog (150 MiB, issue 12) is why the
  slots are 32 bits: 64-bit ones took twice this.
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
"""A generation's filter has four times as many bits as it has slots."""


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
    return gens * ((1 << bits) * _slot_bytes(bits) + _filter_bytes(bits))


def _filter_bytes(bits: int) -> int:
    return (1 << (bits + _FILTER_BITS_PER_SLOT_LOG2)) // 8


class _Generation:
    __slots__ = ("count", "end", "filter", "start", "table")

    def __init__(self, start: int, bits: int) -> None:
        self.start = start  # first rowid it may hold
        self.end = start - 1  # last rowid it holds
        self.count = 0
        self.table = array(
            "I" if bits <= _NARROW_MAX_BITS else "Q", bytes(_slot_bytes(bits) << bits)
        )
        self.filter = bytearray(_filter_bytes(bits))


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
        self.last = 0
        """Highest log rowid indexed: rows above it are read by the next catch-up."""
        self.low = 0
        """Lowest rowid still in the log (as last read): slots below it are dead."""

    def __len__(self) -> int:
        return sum(g.count for g in self._gens)

    def memory(self) -> int:
        """Bytes held by the slot tables and their filters."""
        return len(self._gens) * (self._slots * _slot_bytes(self._bits) + _filter_bytes(self._bits))

    def _filter_bits(self, h: int) -> tuple[int, int, int, int]:
        """Byte offsets and masks of ``h``'s two filter bits."""
        b1 = (h >> self._bits) & self._fmask
        b2 = h >> self._fshift
        return b1 >> 3, 1 << (b1 & 7), b2 >> 3, 1 << (b2 & 7)

    def lookup(self, mid: str) -> list[int]:
        """Rowids (>= :attr:`low`) whose tag matches ``mid``'s, newest first; usually none."""
        h = hash(mid) & _M64
        bits = self._bits
        tag = ((h * _MIX) & _M64) >> self._tshift
        mask = self._mask
        low = self.low
        i1, m1, i2, m2 = self._filter_bits(h)
        found: list[int] = []
        for gen in reversed(self._gens):
            bloom = gen.filter
            if not (bloom[i1] & m1 and bloom[i2] & m2):
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
        for mid in mids:
            # the offset must fit in ``bits`` bits (rows of other processes leave gaps)
            if gen is None or gen.count >= self._per_gen or rowid - gen.start >= mask:
                gen = _Generation(rowid, self._bits)
                gens.append(gen)
            h = hash(mid) & _M64
            bloom = gen.filter
            b = (h >> bits) & fmask
            bloom[b >> 3] |= 1 << (b & 7)
            b = h >> fshift
            bloom[b >> 3] |= 1 << (b & 7)
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
            self._gens.pop(0)
