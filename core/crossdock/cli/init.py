"""The starter configuration written by ``crossdock init``."""

from __future__ import annotations

__all__ = ["STARTER"]

STARTER = """\
# crossdock.toml: written by `crossdock init`. Check it with `crossdock check`.
# Relative paths are resolved against this file's directory. "${VAR}" reads an environment
# variable ("$${" is a literal "${"); secrets never appear in logs or in `crossdock check`.

[server]
listen = "127.0.0.1:8088"
# public_url = "https://events.example.com"   # how browsers reach this server (analytics.js)
# admin_token = "${CROSSDOCK_ADMIN_TOKEN}"    # enables /admin/... (Bearer token)

[queue]
backend = "sqlite"
path = "var/crossdock.db"
# dedupe_window = "24h"                       # drop repeated messageIds seen within this time

[log]
level = "info"
format = "text"                               # "json" for log shippers

# A Segment-compatible tracking API at /v1/* (analytics.js, analytics-python, ...).
# Browser write keys are public; server-side keys can come from the environment.
[[sources]]
id = "web"
type = "segment"
write_keys = ["change-me-write-key"]

# Every event, one JSON object per line: see what arrives before adding vendors.
[[destinations]]
id = "events-file"
plugin = "file"
[destinations.settings]
path = "var/events.ndjson"

# Any HTTP endpoint (Segment-style X-Signature when `secret` is set):
# [[destinations]]
# id = "my-webhook"
# plugin = "webhook"
# sources = ["web"]                           # default: every source
# where = "type == 'track'"                   # JMESPath condition
# [destinations.settings]
# url = "https://hooks.example.com/events"
# secret = "${MY_WEBHOOK_SECRET}"
# [destinations.mapping]                      # field overrides on top of the defaults
# "properties.plan" = "traits.plan"
# [destinations.delivery]
# batch_size = 100
# max_attempts = 12
# max_age = "24h"
"""
