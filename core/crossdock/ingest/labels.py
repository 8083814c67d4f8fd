"""Labels for the events of one request, as error messages name them (``batch[3]``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["IndexLabels"]


class IndexLabels(Sequence[str]):
    """Labels ``<prefix>[i]`` for the messages of a list, made only when an error needs one.

    Pass it as :attr:`crossdock.Ingested.labels`: ``IndexLabels(len(items), "batch")``.
    """

    __slots__ = ("_count", "_prefix")

    def __init__(self, count: int, prefix: str = "") -> None:
        self._count = count
        self._prefix = prefix

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [f"{self._prefix}[{i}]" for i in range(self._count)[index]]
        if not 0 <= index < self._count:
            raise IndexError(index)
        return f"{self._prefix}[{index}]"
