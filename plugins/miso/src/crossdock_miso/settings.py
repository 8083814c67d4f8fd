"""``[destinations.settings]`` of a ``miso`` destination."""

from __future__ import annotations

from typing import Any

from attrs import field, frozen

import crossdock

DEFAULT_BASE_URL = "https://api.askmiso.com"


def _non_empty_secret(_: Any, attribute: Any, value: crossdock.Secret) -> None:
    if not value.reveal().strip():
        msg = "must not be empty (use Miso's secret API key)"
        raise ValueError(msg)


def _expression(_: Any, attribute: Any, value: str) -> None:
    if not value.strip():
        msg = "must not be empty (a JMESPath expression such as userId)"
        raise ValueError(msg)
    try:
        crossdock.compile_expression(value, path=attribute.name)
    except crossdock.MappingError:
        msg = "must be a valid JMESPath expression, such as userId or traits.customer_id"
        raise ValueError(msg) from None


@frozen
class MisoSettings:
    """Settings of a ``miso`` destination.

    ``api_key`` is Miso's **secret** key (the environment is told apart by the key);
    ``base_url`` Miso's API host; ``user_id_field`` and ``anonymous_id_field`` are JMESPath
    expressions on the event that give Miso's ``user_id`` and ``anonymous_id``.
    """

    api_key: crossdock.Secret = field(validator=_non_empty_secret)
    base_url: str = DEFAULT_BASE_URL
    user_id_field: str = field(default="userId", validator=_expression)
    anonymous_id_field: str = field(default="anonymousId", validator=_expression)
