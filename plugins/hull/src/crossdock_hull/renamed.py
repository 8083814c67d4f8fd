"""The override keys of the ``hull`` mapping before 0.2 (the fields an entry was built from) →
the entry fields they set now (:data:`RENAMED`, given to ``DestinationType(renamed=...)``).

The core translates an operator's old key with a ``FutureWarning`` naming the new one; ``$`` in
a template stands for the operator's expression, wrapped where the old plugin converted the
value after the mapping (claims checked and lower-cased, traits flattened, properties forced to
an object). ``properties`` and ``name`` both set the page and screen properties: an operator
who overrode both gets the one written last (the README says what to write instead). ``kind``
(the Spec type the entry was built as) has no field to go to: the dispatch replaces it, so
``crossdock check`` reports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

_AS_USER: Final = "claims.io\\.hull\\.asUser"
_AS_ACCOUNT: Final = "group.claims.io\\.hull\\.asAccount"

RENAMED: Final[Mapping[str, str | Mapping[str, str]]] = {
    "user.external_id": {f"{_AS_USER}.external_id": "hull_claim($)"},
    "user.anonymous_id": {f"{_AS_USER}.anonymous_id": "hull_claim($)"},
    "user.email": {f"{_AS_USER}.email": "hull_email($)"},
    "account.external_id": {f"{_AS_ACCOUNT}.external_id": "hull_claim($)"},
    "account.domain": {f"{_AS_ACCOUNT}.domain": "hull_claim($)"},
    "active": {"claims.io\\.hull\\.active": "$ == `true` || `null`"},
    "traits": {"identify.body": "hull_attributes($)", "group.body": "hull_attributes($)"},
    "properties": {
        "body.properties": "hull_properties($)",
        "page.body.properties": "hull_properties($, name)",
        "screen.body.properties": "hull_properties($, name)",
    },
    "name": {
        "page.body.properties": "hull_properties(properties, $)",
        "screen.body.properties": "hull_properties(properties, $)",
    },
    "event": "body.event",
    "event_id": "body.event_id",
    "created_at": "body.created_at",
    "source": "body.source",
    "ip": "body.ip",
    "url": "body.url",
    "referer": "body.referer",
    # the whole body: a field under the alias section's `body` would replace it (and bring back
    # the track body's placeholders)
    "previous_id": {"alias.body": "{anonymous_id: hull_claim($)}"},
}
"""Old override key → new key, or → ``{new key: template}`` (see the module docstring)."""
