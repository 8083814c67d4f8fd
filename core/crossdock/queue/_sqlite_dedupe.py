"""The SQLite queue's in-memory messageId index over the append-only ``dedupe`` log.

The log (``dedupe(id, message_id, seen_at)``, no index on ``message_id``) is written in
arrival order, so a commit appends its ids at the right edge of one b-tree instead of
dirtying a random index page per id. Whether an id was seen is answered here, in memory:

- **Generations.** Open-addressing tables (linear probing) in ``array('Q')``, all of
  ``2**bits`` slots, each filled to :data:`LOAD` and then closed; a new one takes the next ids.
  A generation covers a contiguous range of log rowids and is dropped whole once every rowid
  in it is below the log's lowest rowid (the cap and the age pruning delete from the low end),
  so there are no tombstones and no rebuild while running.
- **Slots.** ``(hash & 0xFFFFFFFF00000000) | (rowid - start + 1)``: the upper 32 bits of the
  id's 64-bit ``hash()`` (SipHash, seeded per process; the index never leaves the process)
  and the row's offset in its generation; ``0`` is an empty slot. A lookup compares tags only
  and returns the rowids whose tags match; the caller reads those rows to compare the full id
  and ``seen_at``, so a tag collision (one in 2**32 per probed slot) costs a rowid lookup,
  never a false duplicate.
- **Memory.** 8 bytes per slot at :data:`LOAD` = 13.3 bytes per id while a generation fills;
  a generation holds about ``dedupe_max / 4`` ids, so at most five are alive (four full plus
  the one filling). Default ``dedupe_max`` (5 M ids): 2**21 slots (16 MiB) per generation,
  holding 1.26 M ids each; a full window keeps four or five alive: 64-80 MiB, 13.4-16.8 bytes
  per id (:func:`memory_bytes` gives the bound for any ``dedupe_max``).
- **Start.** Rebuilt from the log by one sequential scan (:meth:`DedupeIndex.add_many`).
"""

from __future__ import annotations

from array import array

__all__ = ["LOAD", "DedupeIndex"]

LOAD = 0.6
"""Fraction of a generation's slots filled before the next generation starts."""

_M64 = (1 << 64) - 1
_HI = _M64 ^ 0xFFFFFFFF
_LO = 0xFFFFFFFF
_MIN_BITS = 10
_GENERATIONS = 4
"""``dedupe_max`` is spread over about this many full generations."""


def slot_bits(dedupe_max: int) -> int:
    """log2 of a generation's slots for a window of ``dedupe_max`` ids."""
    want = max(1, dedupe_max) / _GENERATIONS / LOAD
    return max(_MIN_BITS, (int(want) - 1).bit_length())


def memory_bytes(dedupe_max: int) -> int:
    """Most bytes the index takes for a window of ``dedupe_max`` ids (all generations alive)."""
    bits = slot_bits(dedupe_max)
    per_gen = int((1 << bits) * LOAD)
    gens = -(-dedupe_max // per_gen) + 1
    return gens * (1 << bits) * 8


class _Generation:
    __slots__ = ("count", "end", "start", "table")

    def __init__(self, start: int, slots: int) -> None:
        self.start = start  # first rowid it may hold
        self.end = start - 1  # last rowid it holds
        self.count = 0
        self.table = array("Q", bytes(8 * slots))


class DedupeIndex:
    """Exact set of log rowids by messageId hash; see the module docstring."""

    def __init__(self, dedupe_max: int) -> None:
        bits = slot_bits(dedupe_max)
        self._slots = 1 << bits
        self._mask = self._slots - 1
        self._per_gen = int(self._slots * LOAD)
        self._gens: list[_Generation] = []  # oldest first
        self.last = 0
        """Highest log rowid indexed: rows above it are read by the next catch-up."""
        self.low = 0
        """Lowest rowid still in the log (as last read): slots below it are dead."""

    def __len__(self) -> int:
        return sum(g.count for g in self._gens)

    def memory(self) -> int:
        """Bytes held by the slot tables."""
        return len(self._gens) * self._slots * 8

    def lookup(self, mid: str) -> list[int]:
        """Rowids (>= :attr:`low`) whose tag matches ``mid``'s, newest first; usually none."""
        h = hash(mid) & _M64
        tag = h & _HI
        mask = self._mask
        low = self.low
        found: list[int] = []
        for gen in reversed(self._gens):
            table = gen.table
            i = h & mask
            s = table[i]
            while s:
                if s & _HI == tag:
                    rowid = gen.start - 1 + (s & _LO)
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
        for mid in mids:
            if gen is None or gen.count >= self._per_gen or rowid - gen.start >= _LO:
                gen = _Generation(rowid, self._slots)
                gens.append(gen)
            h = hash(mid) & _M64
            table = gen.table
            i = h & mask
            while table[i]:
                i = (i + 1) & mask
            table[i] = (h & _HI) | (rowid - gen.start + 1)
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
