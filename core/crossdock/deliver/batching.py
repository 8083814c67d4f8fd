"""Batching caps: how many events and bytes one request of a destination may carry.

One :class:`BatchCaps` per destination, from the vendor's :class:`~crossdock.Limits` and the
operator's ``[destinations.delivery]`` (which may only lower them). The daemon's worker and
``crossdock backfill`` both form batches with it.
"""

from __future__ import annotations

from attrs import frozen

from crossdock.types import Destination

__all__ = ["SEPARATOR_BYTES", "BatchCaps"]

SEPARATOR_BYTES = 1
"""Bytes counted per item on top of its payload (the comma or newline between items)."""


@frozen
class BatchCaps:
    """The caps of one destination's requests.

    ``count`` and ``bytes`` bound a batch (``delivery.batch_size``/``max_bytes`` capped at the
    vendor's ``max_batch_count``/``max_batch_bytes``); ``event_bytes`` bounds one payload
    (the vendor's ``max_event_bytes``); ``vendor_bytes`` is the vendor's own batch limit, which
    a single payload must fit in even when the operator set a smaller ``max_bytes``.
    """

    count: int
    bytes: int
    event_bytes: int | None
    vendor_bytes: int

    @classmethod
    def of(cls, destination: Destination) -> BatchCaps:
        """The caps of ``destination``."""
        limits, delivery = destination.limits, destination.delivery
        count = delivery.batch_size or limits.max_batch_count
        size = delivery.max_bytes or limits.max_batch_bytes
        return cls(
            count=max(1, min(count, limits.max_batch_count)),
            bytes=max(1, min(size, limits.max_batch_bytes)),
            event_bytes=limits.max_event_bytes,
            vendor_bytes=limits.max_batch_bytes,
        )

    def too_large(self, data: bytes) -> bool:
        """Whether one serialized payload can never be sent (over either vendor limit)."""
        if self.event_bytes is not None and len(data) > self.event_bytes:
            return True
        return len(data) + SEPARATOR_BYTES > self.vendor_bytes

    @property
    def largest(self) -> int:
        """The most bytes a payload may have: :meth:`too_large` is ``len(data) > largest``."""
        vendor = self.vendor_bytes - SEPARATOR_BYTES
        return vendor if self.event_bytes is None else min(self.event_bytes, vendor)

    def full(self, count: int, size: int, cost: int) -> bool:
        """Whether a batch of ``count`` items and ``size`` bytes has no room for one more item
        costing ``cost`` bytes (an empty batch always has room)."""
        return count > 0 and (count >= self.count or size + cost > self.bytes)
