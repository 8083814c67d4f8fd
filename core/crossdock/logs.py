"""Structured logging: one JSON object (or one readable line) per record, secrets redacted.

Every configured :class:`~crossdock.Secret` is registered with :func:`setup_logging`; a filter
replaces any occurrence of a secret value in the message, the arguments and the ``extra``
fields with ``***`` before a handler sees the record, so even a vendor error body that echoes a
token cannot leak it.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable
from typing import Any

import orjson

from crossdock.secrets import Secret, variants

_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
) | {"message", "asctime", "taskName"}


class RedactSecrets(logging.Filter):
    """Replace the values of known secrets in a record with ``***``."""

    def __init__(self, secrets: Iterable[Secret] = ()) -> None:
        super().__init__()
        self.values: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[Secret]) -> None:
        """Register more secrets with their URL-encoded and base64 forms (values shorter than 4
        characters are not matched)."""
        for secret in secrets:
            for form in variants(secret.reveal()):
                if form not in self.values:
                    self.values.append(form)
        self.values.sort(key=len, reverse=True)

    def redact(self, text: str) -> str:
        """``text`` with every registered secret value masked."""
        for value in self.values:
            if value in text:
                text = text.replace(value, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.values:
            return True
        record.msg = self.redact(record.getMessage())
        record.args = None
        for key, value in list(vars(record).items()):
            if key not in _STANDARD_ATTRS and isinstance(value, str):
                setattr(record, key, self.redact(value))
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, extra fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            doc["exception"] = record.exc_text
        return orjson.dumps(doc, default=str).decode()


class TextFormatter(logging.Formatter):
    """A readable line: time level logger: message key=value ..."""

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(
            f"{k}={v}"
            for k, v in vars(record).items()
            if k not in _STANDARD_ATTRS and not k.startswith("_")
        )
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
        line = f"{stamp} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if extras:
            line += " " + extras
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        elif record.exc_text:
            line += "\n" + record.exc_text
        return line


def setup_logging(
    level: str = "info", fmt: str = "json", secrets: Iterable[Secret] = ()
) -> RedactSecrets:
    """Configure the root logger for the daemon; returns the redaction filter."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    redact = RedactSecrets(secrets)
    handler.addFilter(redact)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    return redact
