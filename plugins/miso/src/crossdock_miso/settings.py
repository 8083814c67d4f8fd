"""``[destinations.settings]`` of a ``miso`` destination."""

from __future__ import annotations

from typing import Any

from attrs import field, frozen

import crossdock

DEFAULT_BASE_URL = "https://api.askmiso.com"


def _invalid(message: str, attribute: Any) -> ValueError:
    # "'field' message": the config error names the field and shows the message (for a secret
    # field only "invalid value"); the message never holds the value.
    return ValueError(f"'{attribute.name}' {message}")


def _non_empty_secret(_: Any, attribute: Any, value: crossdock.Secret) -> None:
    if not value.reveal().strip():
        raise _invalid("must not be empty (use Miso's secret API key)", attribute)


def _expression(_: Any, attribute: Any, value: str) -> None:
    if not value.strip():
        raise _invalid("must not be empty (a JMESPath expression such as userId)", attribute)
    try:
        crossdock.compile_expression(value, path=attribute.name)
    except crossdock.MappingError:
        message = "must be a valid JMESPath expression, such as userId or traits.customer_id"
        raise _invalid(message, attribute) from None


@frozen
class MisoSettings:
    """Settings of a ``miso`` destination.

    ``api_key`` is Miso's **secret** key (the environment is told apart by the key);
    ``base_url`` Miso's API host. ``user_id_field`` and ``anonymous_id_field`` (JMESPath
    expressions on the event) are deprecated aliases of the mapping fields ``user_id`` and
    ``anonymous_id``, removed in crossdock-miso 0.3 (see :mod:`crossdock_miso.transform`).
    """

    api_key: crossdock.Secret = field(validator=_non_empty_secret)
    base_url: str = DEFAULT_BASE_URL
    user_id_field: str = field(default="userId", validator=_expression)
    anonymous_id_field: str = field(default="anonymousId", validator=_expression)
