"""crossdock.config.load: two-phase structuring, each error with its path, ${VAR}, merges."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Literal

import pytest
from attrs import frozen

import crossdock
from crossdock.config.converter import Duration, parse_duration, render_errors, structure
from crossdock.config.load import load_config, parse_config
from crossdock.errors import ConfigError
from crossdock.plugins.registry import load_registry

SECRET = "sk_live_VERYSECRET_4242"
DURATION_HINT = "expected a duration like 24h, 15m, 90s or 500ms, or a number of seconds"


@frozen
class AcmeSettings:
    partner_name: str
    token: crossdock.Secret
    base_url: str = "https://api.acme.example/"
    region: Literal["eu", "us"] = "eu"
    timeout: Duration = Duration(30.0)  # noqa: RUF009
    out: Path | None = None


@frozen
class HookSettings:
    token: crossdock.Secret | None = None
    write_keys: tuple[str, ...] = ()


def _plugin() -> types.SimpleNamespace:
    @crossdock.hookimpl
    def crossdock_source_types():
        return [crossdock.SourceType("acme-hook", HookSettings, "test source")]

    @crossdock.hookimpl
    def crossdock_destination_types():
        return [
            crossdock.DestinationType(
                "acme",
                AcmeSettings,
                "test destination",
                mapping={"name": "event", "user": "userId", "extra": "properties.x"},
                tables={"events": {"Order Completed": "purchase", "Signed Up": "signup"}},
            )
        ]

    return types.SimpleNamespace(
        crossdock_source_types=crossdock_source_types,
        crossdock_destination_types=crossdock_destination_types,
        __name__="acme_test_plugin",
    )


@pytest.fixture(scope="module")
def registry():
    return load_registry(entrypoints=False, extra_plugins=[("acme", _plugin())])


GOOD = """
[server]
listen = "0.0.0.0:9000"
admin_token = "${ADMIN}"

[queue]
path = "data/q.db"
dedupe_window = "2h"

[[sources]]
id = "in"
type = "acme-hook"
path = "/hooks/acme"
token = "${HOOK_TOKEN}"

[[destinations]]
id = "out"
plugin = "acme"
sources = ["in"]
[destinations.settings]
partner_name = "p"
token = "${ACME_TOKEN}"
out = "files/x.ndjson"
timeout = "500ms"
base_url = "https://staging.acme.example/v2/"
[destinations.mapping]
"user" = ""
"traits.plan" = "traits.plan"
[destinations.tables.events]
"Signed Up" = "register"
"Refund" = "refund"
[destinations.delivery]
max_age = "15m"
timeout = 90
ordering = "per_user"
"""

ENV = {"ADMIN": "admin-token-xyz", "HOOK_TOKEN": "hook-token-xyz", "ACME_TOKEN": SECRET}


def test_good_config_binds_everything(registry, tmp_path):
    config = parse_config(GOOD, registry, ENV, base_dir=tmp_path)
    assert config.server.listen == "0.0.0.0:9000"
    assert config.server.admin_token.reveal() == "admin-token-xyz"
    assert config.queue.path == tmp_path.resolve() / "data/q.db"
    assert config.queue.dedupe_window == 7200.0
    (source,) = config.sources
    assert source.id == "in"
    assert source.path == "/hooks/acme"
    assert source.settings.token.reveal() == "hook-token-xyz"
    assert source.public_url == "http://0.0.0.0:9000"
    (dest,) = config.destinations
    assert dest.plugin == "acme"
    assert dest.sources == ("in",)
    assert dest.settings.token.reveal() == SECRET
    assert dest.settings.base_url == "https://staging.acme.example/v2"  # *base_url: no trailing /
    assert dest.settings.timeout == 0.5
    assert dest.settings.out == tmp_path.resolve() / "files/x.ndjson"
    # mapping overrides: "" removes a key, new keys are added, others kept
    assert dest.mapping == {"name": "event", "extra": "properties.x", "traits.plan": "traits.plan"}
    # tables merge by table name, key by key
    assert dest.tables["events"] == {
        "Order Completed": "purchase",
        "Signed Up": "register",
        "Refund": "refund",
    }
    assert dest.delivery.max_age == 900.0
    assert dest.delivery.timeout == 90.0
    assert dest.delivery.ordering == "per_user"
    secrets = {s.reveal() for s in config.secrets()}
    assert {"admin-token-xyz", "hook-token-xyz", SECRET} <= secrets


def test_defaults(registry, tmp_path):
    config = parse_config("", registry, {}, base_dir=tmp_path)
    assert config.server.listen == "127.0.0.1:8088"
    assert config.server.shutdown_timeout == 10.0
    assert config.queue.backend == "sqlite"
    assert config.queue.path == tmp_path.resolve() / "var/crossdock.db"
    assert config.queue.dedupe_window == 86400.0
    assert config.log.level == "info"
    assert config.sources == ()
    assert config.destinations == ()


def test_public_url_wins(registry, tmp_path):
    text = GOOD.replace("[server]\n", '[server]\npublic_url = "https://events.example.com/"\n')
    config = parse_config(text, registry, ENV, base_dir=tmp_path)
    assert config.sources[0].public_url == "https://events.example.com"


BAD = """
colour = "blue"

[server]
listen = "nowhere"
public_url = "ftp://example.com"

[queue]
backend = "kafka"
dedupe_window = "forever"

[log]
level = "loud"

[[sources]]
id = "in"
type = "acme-hook"
write_keys = "not-a-list"
surprise = 1

[[sources]]
id = "in"
type = "nope"

[[sources]]
type = "acme-hook"

[[destinations]]
id = "a"
plugin = "acme"
sources = ["in", "ghost"]
colour = 1
[destinations.settings]
token = 12345
region = "mars"
base_url = "not a url"
[destinations.delivery]
batch_size = 0
ordering = "random"
max_age = "soon"
bogus = true

[[destinations]]
id = "b"
plugin = "unknown-vendor"

[[destinations]]
id = "c"
plugin = "acme"
"""


def test_every_problem_at_once_with_paths(registry):
    with pytest.raises(ConfigError) as info:
        parse_config(BAD, registry, {})
    problems = info.value.problems
    expected = [
        "colour: unknown key",
        "server.listen: expected host:port, like 127.0.0.1:8088",
        "server.public_url: expected an http:// or https:// URL",
        "queue.backend: must be one of sqlite, nats",
        f"queue.dedupe_window: {DURATION_HINT}",
        "log.level: must be one of debug, info, warning, error",
        "sources[0].write_keys: expected a list",
        "sources[0].surprise: unknown key",
        'sources[1].id: duplicate id "in" (also sources[0])',
        "sources[2].id: missing",
        'destinations[0].sources[1]: unknown source "ghost" (known: in)',
        "destinations[0].colour: unknown key",
        "destinations[0].settings.partner_name: missing",
        "destinations[0].settings.token: expected a string",
        "destinations[0].settings.region: must be one of eu, us",
        "destinations[0].settings.base_url: expected an http:// or https:// URL",
        f"destinations[0].delivery.max_age: {DURATION_HINT}",
        "destinations[0].delivery.bogus: unknown key",
        "destinations[2].settings.partner_name: missing",
        "destinations[2].settings.token: missing",
    ]
    for problem in expected:
        assert problem in problems, (problem, problems)
    unknown_dest = 'destinations[1].plugin: unknown destination type "unknown-vendor" (known: acme'
    assert any(p.startswith(unknown_dest) for p in problems)
    unknown_source = 'sources[1].type: unknown source type "nope" (known: acme-hook'
    assert any(p.startswith(unknown_source) for p in problems)
    assert problems == sorted(problems)


def test_delivery_checks_after_structuring(registry):
    text = """
[[destinations]]
id = "a"
plugin = "acme"
[destinations.settings]
partner_name = "p"
token = "t"
[destinations.delivery]
batch_size = 0
ordering = "random"
rate_limit = -1
max_wait_ms = -5
"""
    with pytest.raises(ConfigError) as info:
        parse_config(text, registry, {})
    assert info.value.problems == [
        "destinations[0].delivery.batch_size: must be a positive number",
        "destinations[0].delivery.max_wait_ms: must not be negative",
        "destinations[0].delivery.ordering: must be one of none, per_user",
        "destinations[0].delivery.rate_limit: must be a positive number",
    ]


def test_secret_values_never_appear_in_problems(registry):
    text = f"""
[server]
listen = "{SECRET}"
admin_token = ["{SECRET}"]
public_url = "{SECRET}"
[queue]
backend = "{SECRET}"
dedupe_max = "{SECRET}"
[[sources]]
id = "in"
type = "acme-hook"
token = 5
write_keys = "{SECRET}"
{SECRET.lower()} = "{SECRET}"
[[destinations]]
id = "a"
plugin = "acme"
where = "x"
[destinations.settings]
partner_name = ["{SECRET}"]
token = "${{ACME_TOKEN}}"
region = "{SECRET}"
base_url = "{SECRET}"
timeout = "{SECRET}"
[destinations.delivery]
ordering = "{SECRET}"
max_age = "{SECRET}"
batch_size = "{SECRET}"
"""
    with pytest.raises(ConfigError) as info:
        parse_config(text, registry, {"ACME_TOKEN": SECRET})
    problems = info.value.problems
    assert len(problems) >= 12
    for problem in problems:
        assert SECRET not in problem
        assert "VERYSECRET" not in problem
    assert SECRET not in str(info.value)


def test_env_expansion_missing_and_escape(registry):
    text = """
[[sources]]
id = "in"
type = "acme-hook"
token = "${MISSING_ONE}"
write_keys = ["a-${PART}-b", "$${LITERAL}", "${ALSO_MISSING}"]
"""
    with pytest.raises(ConfigError) as info:
        parse_config(text, registry, {"PART": "x"})
    assert info.value.problems == [
        "sources[0].token: environment variable MISSING_ONE is not set",
        "sources[0].write_keys[2]: environment variable ALSO_MISSING is not set",
    ]
    config = parse_config(text, registry, {"PART": "x", "MISSING_ONE": "t", "ALSO_MISSING": "z"})
    assert config.sources[0].settings.write_keys == ("a-x-b", "${LITERAL}", "z")


def test_invalid_reference(registry):
    text = '[server]\nlisten = "${not valid}"\n'
    with pytest.raises(ConfigError) as info:
        parse_config(text, registry, {})
    assert info.value.problems == [
        "server.listen: invalid ${...} reference (write $${ for a literal ${)"
    ]


def test_invalid_toml(registry):
    with pytest.raises(ConfigError) as info:
        parse_config("[server\n", registry, {})
    assert info.value.problems[0].startswith("config: invalid TOML")


def test_load_config_missing_file_and_base_dir(registry, tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.toml", registry, {})
    assert "file not found" in info.value.problems[0]
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "crossdock.toml"
    path.write_text('[queue]\npath = "q.db"\n')
    config = load_config(path, registry, {})
    assert config.queue.path == (tmp_path / "conf" / "q.db").resolve()
    assert config.base_dir == (tmp_path / "conf").resolve()
    assert config.path == path


def test_two_phase_prefixes_differ_for_sources_and_destinations(registry):
    text = """
[[sources]]
id = "in"
type = "acme-hook"
tokn = "x"
[[destinations]]
id = "a"
plugin = "acme"
[destinations.settings]
partner_name = "p"
token = "t"
tokn = "x"
"""
    with pytest.raises(ConfigError) as info:
        parse_config(text, registry, {})
    assert info.value.problems == [
        "destinations[0].settings.tokn: unknown key",
        "sources[0].tokn: unknown key",
    ]


def test_mapping_and_where_validation(registry):
    text = """
[[destinations]]
id = "a"
plugin = "acme"
where = "type == == 'track'"
[destinations.settings]
partner_name = "p"
token = "t"
[destinations.mapping]
"ok" = "event"
"broken" = "foo[?"
"""
    with pytest.raises(ConfigError) as info:
        parse_config(text, registry, {})
    problems = info.value.problems
    assert any(p.startswith("destinations[0].where: ") for p in problems), problems
    assert any(p.startswith("destinations[0].mapping.broken: ") for p in problems), problems
    assert not any(p.startswith("destinations[0].mapping.ok:") for p in problems)


def test_mapping_must_be_strings(registry):
    text = """
[[destinations]]
id = "a"
plugin = "acme"
[destinations.settings]
partner_name = "p"
token = "t"
[destinations.mapping]
"n" = 5
"""
    with pytest.raises(ConfigError) as info:
        parse_config(text, registry, {})
    assert info.value.problems == [
        "destinations[0].mapping.n: expected a JMESPath expression (a string)"
    ]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("24h", 86400.0),
        ("90s", 90.0),
        ("15m", 900.0),
        ("500ms", 0.5),
        ("2d", 172800.0),
        (5, 5.0),
        (1.5, 1.5),
    ],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["24", "h", "-5s", True, "1w", None, -1])
def test_bad_durations(text):
    with pytest.raises(ValueError, match=r"duration|negative"):
        parse_duration(text)


def test_render_errors_attrs_validator_never_shows_value():
    import attrs

    @attrs.frozen
    class S:
        kind: str = attrs.field(validator=attrs.validators.in_(["a", "b"]))
        n: int = attrs.field(default=1, validator=attrs.validators.instance_of(int))

    with pytest.raises(Exception) as info:  # noqa: PT011 (cattrs' exception group)
        structure({"kind": SECRET}, S)
    assert render_errors(info.value, "x") == ["x.kind: must be one of a, b"]


def test_strict_scalars():
    @frozen
    class S:
        name: str
        count: int
        ratio: float
        flag: bool

    with pytest.raises(Exception) as info:  # noqa: PT011 (cattrs' exception group)
        structure({"name": True, "count": "5", "ratio": "1.0", "flag": 1}, S)
    assert render_errors(info.value, "s") == [
        "s.count: expected an integer",
        "s.flag: expected true or false",
        "s.name: expected a string",
        "s.ratio: expected a number",
    ]
    assert structure({"name": "n", "count": 5, "ratio": 1, "flag": True}, S).ratio == 1.0


def test_sources_cannot_share_routes(registry):
    text = """
[[sources]]
id = "a"
type = "segment"
write_keys = ["k1"]

[[sources]]
id = "b"
type = "segment"
write_keys = ["k2"]

[[sources]]
id = "c"
type = "webhook"
path = "/hooks/x"

[[sources]]
id = "d"
type = "webhook"
path = "/hooks/x"
"""
    with pytest.raises(ConfigError) as info:
        parse_config(text, registry, {})
    assert info.value.problems == [
        "sources[1].path: /v1/* is already served by sources[0]",
        "sources[3].path: /hooks/x is already served by sources[2]",
    ]


def test_plugin_validator_messages_are_shown_but_never_for_secrets():
    import attrs

    def no_path(instance, attribute, value):
        if "/" in value.removeprefix("https://"):
            raise ValueError(f"'{attribute.name}' must be a domain, not a URL with a path")

    def long_enough(instance, attribute, value):
        if len(value.reveal()) < 8:
            raise ValueError(f"'{attribute.name}' is too short: {value.reveal()}")

    @attrs.frozen
    class S:
        origin: str = attrs.field(validator=no_path)
        key: crossdock.Secret = attrs.field(validator=long_enough)

    with pytest.raises(Exception) as info:  # noqa: PT011 (cattrs' exception group)
        structure({"origin": "https://shop.example.com/x", "key": "abcdefghij"}, S)
    assert render_errors(info.value, "d") == ["d.origin: must be a domain, not a URL with a path"]
    with pytest.raises(Exception) as info:  # noqa: PT011 (cattrs' exception group)
        structure({"origin": "shop.example.com", "key": "abc"}, S)
    assert render_errors(info.value, "d") == ["d.key: invalid value"]  # never the secret's words


def test_validators_unknown_and_missing_keys_all_at_once():
    import attrs

    def domain(instance, attribute, value):
        if "/" in value:
            raise ValueError(f"'{attribute.name}' must be a domain, not a URL with a path")

    def even(instance, attribute, value):
        if value % 2:
            raise ValueError("must be even")  # no quoted field name: the field is still known

    @attrs.frozen
    class S:
        origin: str = attrs.field(validator=domain)
        count: int = attrs.field(validator=even)
        kind: str = attrs.field(default="a", validator=attrs.validators.in_(["a", "b"]))
        keys: list[str] = attrs.field(factory=list, validator=attrs.validators.min_len(1))
        key: crossdock.Secret = attrs.field(default=None)
        partner: str = ""

    with pytest.raises(Exception) as info:  # noqa: PT011 (cattrs' exception group)
        structure({"origin": "x.example/p", "count": 3, "kind": "z", "keys": [], "bogus": 1}, S)
    assert render_errors(info.value, "d") == [
        "d.bogus: unknown key",
        "d.count: must be even",
        "d.keys: must have at least 1 item(s)",
        "d.kind: must be one of a, b",
        "d.origin: must be a domain, not a URL with a path",
    ]
    with pytest.raises(Exception) as info:  # noqa: PT011
        structure({"count": 3, "partner": []}, S)
    assert render_errors(info.value, "d") == [
        "d.count: must be even",
        "d.origin: missing",
        "d.partner: expected a string",
    ]


def test_every_settings_problem_at_once_through_the_config(registry):
    import attrs

    def no_path(instance, attribute, value):
        if "/" in value:
            raise ValueError(f"'{attribute.name}' must be a domain")

    def long_secret(instance, attribute, value):
        if len(value.reveal()) < 30:
            raise ValueError(f"'{attribute.name}' is too short: {value.reveal()}")

    @attrs.frozen
    class Strict:
        origin: str = attrs.field(validator=no_path)
        partner: str = attrs.field(validator=attrs.validators.min_len(3))
        token: crossdock.Secret = attrs.field(validator=long_secret)

    @crossdock.hookimpl
    def crossdock_destination_types():
        return [crossdock.DestinationType("strict", Strict, "test")]

    plugin = types.SimpleNamespace(
        crossdock_destination_types=crossdock_destination_types, __name__="strict_plugin"
    )
    reg = load_registry(entrypoints=False, extra_plugins=[("strict", plugin)])
    text = """
[[destinations]]
id = "s"
plugin = "strict"
[destinations.settings]
origin = "a.example/x"
partner = "ab"
token = "short-secret"
colour = "red"
"""
    with pytest.raises(ConfigError) as info:
        parse_config(text, reg, {})
    assert info.value.problems == [
        "destinations[0].settings.colour: unknown key",
        "destinations[0].settings.origin: must be a domain",
        "destinations[0].settings.partner: must have at least 3 item(s)",
        "destinations[0].settings.token: invalid value",
    ]
    assert "short-secret" not in str(info.value.problems)


def test_numbers_become_strings_where_the_settings_say_str_but_never_secrets_or_bools():
    import attrs

    def digits(value: str) -> str:
        if not value.isdigit():
            raise ValueError("'project_id' must be digits")
        return value

    @attrs.frozen
    class S:
        project_id: str = attrs.field(converter=digits)
        ratio_text: str = "1"
        tags: list[str] = attrs.field(factory=list)
        maybe: str | None = None
        key: crossdock.Secret | None = None
        flag_text: str = ""

    s = structure({"project_id": 123456, "ratio_text": 2.5, "tags": [7, "x"], "maybe": 9}, S)
    assert (s.project_id, s.ratio_text, s.tags, s.maybe) == ("123456", "2.5", ["7", "x"], "9")
    with pytest.raises(Exception) as info:  # noqa: PT011
        structure({"project_id": 12.5, "key": 1234, "flag_text": True}, S)
    assert render_errors(info.value, "d") == [
        "d.flag_text: expected a string",
        "d.key: expected a string",
        "d.project_id: must be digits",  # the author's converter ran on "12.5"
    ]


def test_a_secret_fields_converter_and_validator_words_are_never_shown():
    import attrs

    def strip(value: crossdock.Secret) -> crossdock.Secret:
        raise ValueError(f"'key' cannot be {value.reveal()}")

    @attrs.frozen
    class S:
        key: crossdock.Secret = attrs.field(converter=strip)

    with pytest.raises(Exception) as info:  # noqa: PT011
        structure({"key": SECRET}, S)
    assert render_errors(info.value, "d") == ["d.key: invalid value"]


def test_settings_table_holds_the_non_secret_settings(registry, tmp_path):
    """Mappings read the destination's own settings through the ``settings`` table; secrets
    never reach it."""
    fields = [
        "partner = \"lookup('settings', 'partner_name')\"",
        "leak = \"lookup('settings', 'token')\"",
    ]
    text = GOOD.replace('"traits.plan" = "traits.plan"', "\n".join(fields))
    config = parse_config(text, registry, ENV, base_dir=tmp_path)
    dest = config.destinations[0]
    rows = dest.tables["settings"]
    assert rows["partner_name"] == "p"
    assert "token" not in rows
    assert SECRET not in repr(rows)
    payload = crossdock.compile_spec(dest.spec)({"type": "track", "event": "x"})
    assert payload == {"name": "x", "partner": "p"}
