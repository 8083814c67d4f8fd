"""The JMESPath functions of the ``productfruits`` type, declared with it; ``mapping.toml``
calls them. ``is_product_fruits_event`` is also shared with every mapping (the plugin's
``crossdock_jmespath_functions``). Like Crossdock's own, they never raise on data."""

from __future__ import annotations

from typing import Any

import crossdock
from crossdock_productfruits.events import describe

__all__ = ["FUNCTIONS", "IS_PRODUCT_FRUITS_EVENT", "is_product_fruits_event", "pf_nonblank"]


def is_product_fruits_event(event: Any, forced: Any = None) -> bool:
    """Whether ``event`` was emitted by Product Fruits itself (:func:`.events.describe`);
    ``forced`` is the operator's ``true``/``false`` for its name (``null``: none), in the
    mapping ``lookup('product_fruits_events', event)``."""
    return isinstance(event, dict) and describe(event, forced=forced) is not None


def pf_nonblank(value: Any) -> bool:
    """Whether ``value`` is a string that is not empty nor only white space (a ``userId`` or
    an email Product Fruits can match a user by)."""
    return isinstance(value, str) and bool(value.strip())


IS_PRODUCT_FRUITS_EVENT = crossdock.JmesFunction.create(
    "is_product_fruits_event", is_product_fruits_event, ["any", "any?"]
)
FUNCTIONS = [IS_PRODUCT_FRUITS_EVENT, crossdock.JmesFunction.create("pf_nonblank", pf_nonblank)]
"""Declared with the type: callable from ``productfruits`` destinations' mappings."""
