"""crossdock.config.load: a source type whose mapping is a MappingFile gets the config's
``[sources.mapping]`` overrides (sections, shorthand, dispatch) and ``[sources.tables.*]`` rows
merged into ``Source.spec``, with problems at their full path."""

from __future__ import annotations

import types

import pytest
from attrs import frozen

import crossdock
from crossdock.config.load import parse_config
from crossdock.errors import ConfigError
from crossdock.plugins.registry import load_registry

SPEC = crossdock.parse_mapping(
    """
type = "'track'"
event = "name"
[dispatch]
select = "lookup('kinds', name)"
[sections.view.fields]
event = "'Viewed'"
[sections.other.fields]
properties.kept = "`true`"
[tables.kinds]
view = "view"
"""
)


@frozen
class FileSettings:
    """Settings of the test source."""

    token: crossdock.Secret | None = None


def _plugin() -> types.SimpleNamespace:
    @crossdock.hookimpl
    def crossdock_source_types():
        return [
            crossdock.SourceType("spec-hook", FileSettings, "mapping file source", mapping=SPEC),
            crossdock.SourceType("flat-hook", FileSettings, "flat source", mapping={"a": "b"}),
        ]

    return types.SimpleNamespace(crossdock_source_types=crossdock_source_types, __name__="t")


@pytest.fixture(scope="module")
def registry():
    return load_registry(entrypoints=False, extra_plugins=[("spec", _plugin())])


def test_source_overrides_and_tables_merge_into_its_spec(registry, tmp_path):
    config = parse_config(
        """
[[sources]]
id = "in"
type = "spec-hook"
[sources.mapping]
userId = "uid"
"view.properties.page" = "page"
[sources.mapping.sections.other]
where = "name != 'noise'"
[sources.tables.kinds]
other = "other"
""",
        registry,
        {},
        base_dir=tmp_path,
    )
    source = config.source("in")
    assert source.spec is not None
    assert source.spec.fields == {"type": "'track'", "event": "name", "userId": "uid"}
    assert source.mapping == source.spec.fields
    assert source.spec.sections["view"].fields["properties.page"] == "page"
    assert source.spec.sections["other"].where == "name != 'noise'"
    assert source.spec.tables["kinds"] == {"view": "view", "other": "other"}
    assert source.spec.select == "lookup('kinds', name)"


def test_source_spec_problems_carry_their_path(registry, tmp_path):
    text = """
[[sources]]
id = "in"
type = "spec-hook"
[sources.mapping]
"view.event" = "name ==="
[sources.tables]
kinds = 3
"""
    with pytest.raises(ConfigError) as info:
        parse_config(text, registry, {}, base_dir=tmp_path)
    message = str(info.value)
    assert "sources[0].mapping.view.event: invalid JMESPath" in message
    assert "sources[0].tables" in message


def test_tables_on_a_source_without_mapping_file_is_refused(registry, tmp_path):
    text = """
[[sources]]
id = "in"
type = "flat-hook"
[sources.tables.kinds]
a = "b"
"""
    with pytest.raises(ConfigError, match=r"sources\[0\]\.tables: unknown key"):
        parse_config(text, registry, {}, base_dir=tmp_path)


def test_flat_source_mapping_is_unchanged(registry, tmp_path):
    text = """
[[sources]]
id = "in"
type = "flat-hook"
[sources.mapping]
c = "d"
"""
    source = parse_config(text, registry, {}, base_dir=tmp_path).source("in")
    assert source.spec is None
    assert source.mapping == {"a": "b", "c": "d"}
