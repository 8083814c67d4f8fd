"""The JMESPath functions of the ``productfruits`` type, declared with it (``FUNCTIONS``).

``mapping.toml`` calls them; they never raise on data (a value of the wrong shape gives
``false``):

- ``is_product_fruits_event(event, forced?)``: whether ``event`` is one of Product Fruits' own
  events (:func:`crossdock_productfruits.events.describe`); ``forced`` is the operator's answer
  for its name, ``lookup('product_fruits_events', event)`` in the mapping.
- ``pf_nonblank(value)``: whether ``value`` is a string with something besides white space (a
  ``userId`` or an email Product Fruits can match a user by).
"""

from __future__ import annotations

from typing import Any

import crossdock
from crossdock_productfruits.events import describe

__all__ = ["FUNCTIONS", "IS_PRODUCT_FRUITS_EVENT", "is_product_fruits_event", "pf_nonblank"]


def is_product_fruits_event(event: Any, forced: Any = None) -> bool:
    """Whether ``event`` was emitted by Product Fruits itself; ``forced`` is the operator's
    ``true``/``false`` for its name (``null``: none)."""
    return isinstance(event, dict) and describe(event, forced=forced) is not None


def pf_nonblank(value: Any) -> bool:
    """Whether ``value`` is a string that is not empty nor only white space."""
    return isinstance(value, str) and bool(value.strip())


IS_PRODUCT_FRUITS_EVENT = crossdock.JmesFunction.create(
    "is_product_fruits_event", is_product_fruits_event, ["any", "any?"]
)

FUNCTIONS = [
    IS_PRODUCT_FRUITS_EVENT,
    crossdock.JmesFunction.create("pf_nonblank", pf_nonblank, ["any"]),
]
"""Declared with the type: callable from ``productfruits`` destinations' mappings."""
