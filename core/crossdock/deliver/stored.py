"""Sending events as they were stored: the worker's path for identity mappings.

A destination whose mapping is the identity (``"." = "@"``, no ``where``: the ``webhook``
type's default) sends each event exactly as ingest stored it. orjson writes an event it read
back byte for byte, so the stored bytes are the payload's JSON: the worker fetches them as
:class:`~crossdock.queue.StoredEvent` (queues that can, :class:`~crossdock.queue.FetchesStored`)
and hands the deliverer a :class:`StoredItem` without decoding or encoding anything. Decoding
a fetched event into dicts and serializing it again cost more of the event loop (and the GIL)
than everything else delivery does per event (``bench/deliver_cost.py``).

Nothing changes for a deliverer: :attr:`StoredItem.event` and :attr:`StoredItem.payload` are
the decoded event, built the first time either is read.
"""

from __future__ import annotations

from typing import Any

from crossdock.queue import StoredEvent
from crossdock.transform.mapping import CompiledMapping
from crossdock.types import BatchItem, Event, Transformer

__all__ = ["StoredItem", "sends_stored_events"]

_EVENT_SLOT: Any = BatchItem.__dict__["event"]
_PAYLOAD_SLOT: Any = BatchItem.__dict__["payload"]


def sends_stored_events(transformer: Transformer) -> bool:
    """Whether ``transformer`` maps every event to itself (so the stored bytes can be sent)."""
    return isinstance(transformer, CompiledMapping) and transformer.is_identity


class StoredItem(BatchItem):
    """A :class:`~crossdock.BatchItem` whose ``data`` are the bytes the queue stored; ``event``
    and ``payload`` (the same object, as the identity mapping makes them) are decoded from
    the queued event when first read."""

    __slots__ = ("queued",)

    queued: StoredEvent

    def __init__(self, queued: StoredEvent) -> None:
        self.queued = queued
        self.data = queued.data

    @property  # type: ignore[override]
    def event(self) -> Event:
        """The event (decoded on first use)."""
        try:
            return _EVENT_SLOT.__get__(self)  # type: ignore[no-any-return]
        except AttributeError:
            return self.queued.event

    @event.setter
    def event(self, value: Event) -> None:
        _EVENT_SLOT.__set__(self, value)

    @property  # type: ignore[override]
    def payload(self) -> Any:
        """The payload: the event itself (decoded on first use)."""
        try:
            return _PAYLOAD_SLOT.__get__(self)
        except AttributeError:
            return self.queued.event

    @payload.setter
    def payload(self, value: Any) -> None:
        _PAYLOAD_SLOT.__set__(self, value)
