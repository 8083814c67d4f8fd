"""Crossdock: a self-hosted customer-event router.

This module is the public API for plugins: everything a plugin may import from the core is
re-exported here (and test helpers in :mod:`crossdock.testing`). Other modules may change
without notice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crossdock.deliver.answers import error_message, json_array, mask_body, outcomes_by_index
from crossdock.deliver.http import (
    outcome_for_error,
    outcome_for_status,
    parse_retry_after,
    send_http,
)
from crossdock.errors import (
    ConfigError,
    CrossdockError,
    IngestError,
    MappingError,
    PluginError,
    Unsendable,
)
from crossdock.ingest.auth import basic_user, bearer_token, secret_in, signature_valid
from crossdock.ingest.body import parse_json, read_body, too_large
from crossdock.ingest.labels import IndexLabels
from crossdock.ingest.normalize import parse_timestamp
from crossdock.plugins.hookspecs import hookimpl
from crossdock.secrets import Secret
from crossdock.types import (
    DELIVERED,
    BatchItem,
    BatchRejected,
    CredentialsRejected,
    Delivered,
    Deliverer,
    DeliverySettings,
    Destination,
    DestinationType,
    Event,
    HasDecode,
    HasDropReason,
    HasMatches,
    HasNotes,
    HasRequestCost,
    HasResponseHeaders,
    HasWebRoutes,
    Ingested,
    Ingestor,
    IngestRoute,
    Limits,
    Outcome,
    Rejected,
    RetryLater,
    Source,
    SourceType,
    Transformer,
)

if TYPE_CHECKING:
    from crossdock.transform.jmes.functions import JmesFunction, register_function
    from crossdock.transform.mapping import (
        CompiledMapping,
        MappingFile,
        compile_expression,
        compile_mapping,
        load_mapping,
        load_mapping_file,
        merge_mapping,
        parse_mapping,
    )
    from crossdock.transform.overrides import merge_spec
    from crossdock.transform.sections import SectionedMapping, compile_spec
    from crossdock.transform.spec import Section

__all__ = [
    "DELIVERED",
    "BatchItem",
    "BatchRejected",
    "CompiledMapping",
    "ConfigError",
    "CredentialsRejected",
    "CrossdockError",
    "Delivered",
    "Deliverer",
    "DeliverySettings",
    "Destination",
    "DestinationType",
    "Event",
    "HasDecode",
    "HasDropReason",
    "HasMatches",
    "HasNotes",
    "HasRequestCost",
    "HasResponseHeaders",
    "HasWebRoutes",
    "IndexLabels",
    "IngestError",
    "IngestRoute",
    "Ingested",
    "Ingestor",
    "JmesFunction",
    "Limits",
    "MappingError",
    "MappingFile",
    "Outcome",
    "PluginError",
    "Rejected",
    "RetryLater",
    "Secret",
    "Section",
    "SectionedMapping",
    "Source",
    "SourceType",
    "Transformer",
    "Unsendable",
    "__version__",
    "basic_user",
    "bearer_token",
    "compile_expression",
    "compile_mapping",
    "compile_spec",
    "error_message",
    "hookimpl",
    "json_array",
    "load_mapping",
    "load_mapping_file",
    "mask_body",
    "merge_mapping",
    "merge_spec",
    "outcome_for_error",
    "outcome_for_status",
    "outcomes_by_index",
    "parse_json",
    "parse_mapping",
    "parse_retry_after",
    "parse_timestamp",
    "read_body",
    "register_function",
    "secret_in",
    "send_http",
    "signature_valid",
    "too_large",
]

_LAZY = {
    "CompiledMapping": "crossdock.transform.mapping",
    "compile_expression": "crossdock.transform.mapping",
    "compile_mapping": "crossdock.transform.mapping",
    "load_mapping": "crossdock.transform.mapping",
    "load_mapping_file": "crossdock.transform.mapping",
    "merge_mapping": "crossdock.transform.mapping",
    "MappingFile": "crossdock.transform.mapping",
    "register_function": "crossdock.transform.jmes.functions",
    "JmesFunction": "crossdock.transform.jmes.functions",
    "parse_mapping": "crossdock.transform.mapping",
    "merge_spec": "crossdock.transform.overrides",
    "SectionedMapping": "crossdock.transform.sections",
    "compile_spec": "crossdock.transform.sections",
    "Section": "crossdock.transform.spec",
}


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("crossdock")
        except PackageNotFoundError:  # running from a source tree without an install
            return "0+unknown"
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    msg = f"module 'crossdock' has no attribute {name!r}"
    raise AttributeError(msg)
