"""``crossdock.toml``: read, expand ``${VAR}``, structure in two phases, validate, bind.

Phase one structures the file's own sections (``[server]``, ``[queue]``, ``[log]``) and the
generic keys of every source and destination, leaving plugin settings raw. Phase two looks up each
type's settings class in the registry and structures the settings
(a source's settings are the other keys of its ``[[sources]]`` table; a destination's sit under
``settings``). Every problem of both phases is collected into one
:class:`~crossdock.errors.ConfigError`, each as ``path: message``, none showing a configured value.
"""

from __future__ import annotations

import importlib.util
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any, Literal, NewType
from urllib.parse import unquote, urlsplit

import attrs
from attrs import field, frozen, validators

from crossdock.config.converter import (
    Duration,
    Listen,
    Url,
    join_path,
    structure_collect,
)
from crossdock.errors import ConfigError
from crossdock.secrets import Secret, find_secrets, walk
from crossdock.transform.spec import MappingFile
from crossdock.types import DeliverySettings, Destination, DestinationType, Source, SourceType

if TYPE_CHECKING:
    from crossdock.plugins.registry import Registry

__all__ = [
    "Config",
    "IngestLimits",
    "LogConfig",
    "QueueConfig",
    "ServerConfig",
    "empty_secrets",
    "expand_env",
    "find_secrets",
    "load_config",
    "parse_config",
    "url_credentials",
]

NatsUrl = NewType("NatsUrl", str)


@frozen
class IngestLimits:
    """``[server.limits]``: ``max_events`` per request (every source), ``max_concurrent``
    ingest requests in progress at once and ``max_body_bytes_in_flight`` bytes of their bodies
    (by ``Content-Length``; both daemon-wide), ``retry_after`` seconds sent with the 503 beyond
    them, ``max_depth`` levels of JSON nesting in one event (the event object is 1)."""

    max_events: int = field(default=5000, validator=[validators.ge(1), validators.le(1_000_000)])
    max_concurrent: int = field(default=256, validator=[validators.ge(1), validators.le(10_000)])
    max_body_bytes_in_flight: int = field(
        default=4 * 1024 * 1024, validator=[validators.ge(64 * 1024), validators.le(2**34)]
    )
    retry_after: int = field(default=1, validator=[validators.ge(1), validators.le(3600)])
    max_depth: int = field(default=64, validator=[validators.ge(8), validators.le(250)])


@frozen
class ServerConfig:
    """``[server]``: where to listen, the public URL, the admin token, the shutdown grace, and
    ``[server.limits]``, the ingest limits (:class:`IngestLimits`)."""

    listen: Listen = Listen("127.0.0.1:8088")  # noqa: RUF009
    public_url: Url | None = None
    admin_token: Secret | None = None
    shutdown_timeout: Duration = Duration(10.0)  # noqa: RUF009
    limits: IngestLimits = field(factory=IngestLimits)


@frozen
class QueueConfig:
    """``[queue]``: the backend and its options.

    Both backends: ``backend``, ``dedupe_window``. ``sqlite`` only: ``path`` (resolved against
    the config file's directory), ``dedupe_max``, ``synchronous``. ``nats`` only: ``url`` (one
    or more servers, comma-separated), ``stream`` (base name of the three JetStream streams),
    ``replicas`` (1 for one server, 3 for a cluster), ``storage`` (``file`` or ``memory``),
    ``ack_wait`` (how long a crashed instance's unsettled events wait before another instance
    gets them), ``max_ack_pending`` (a destination's events in flight over all instances).
    A key of the other backend is an error, so a typo'd backend does not silently ignore it.
    """

    backend: Literal["sqlite", "nats"] = "sqlite"
    path: Path = Path("var/crossdock.db")
    dedupe_window: Duration = Duration(86400.0)  # noqa: RUF009
    dedupe_max: int = 5_000_000
    synchronous: Literal["full", "normal", "extra", "off"] = "full"
    url: NatsUrl = NatsUrl("nats://127.0.0.1:4222")
    stream: str = "crossdock"
    replicas: int = 1
    storage: Literal["file", "memory"] = "file"
    ack_wait: Duration = Duration(30.0)  # noqa: RUF009
    max_ack_pending: int = 20_000


_SQLITE_ONLY = ("path", "dedupe_max", "synchronous")
_NATS_ONLY = ("url", "stream", "replicas", "storage", "ack_wait", "max_ack_pending")
_STREAM_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_NATS_SCHEMES = ("nats", "tls", "ws", "wss")


def _queue_problems(raw: Any, queue: QueueConfig) -> list[str]:
    """Backend-specific checks of ``[queue]`` (messages never show a value: URLs hold passwords)."""
    problems: list[str] = []
    given = raw if isinstance(raw, dict) else {}
    other = _NATS_ONLY if queue.backend == "sqlite" else _SQLITE_ONLY
    for key in other:
        if key in given:
            problems.append(f'queue.{key}: not used by backend = "{queue.backend}"')
    if queue.dedupe_window <= 0:
        problems.append("queue.dedupe_window: must be positive")
    if queue.backend == "sqlite":
        if queue.dedupe_max <= 0:
            problems.append("queue.dedupe_max: must be a positive number")
        return problems
    servers = [s.strip() for s in str(queue.url).split(",")]
    for s in servers:
        scheme, sep, rest = s.partition("://")
        if not sep or scheme not in _NATS_SCHEMES or not rest.strip("/"):
            problems.append(
                "queue.url: must be nats://host:port (or tls://, ws://, wss://), "
                "several separated by commas"
            )
            break
    if not _STREAM_RE.match(queue.stream):
        problems.append("queue.stream: 1 to 32 letters, digits, '_' or '-' (no dots)")
    if not 1 <= queue.replicas <= 5:
        problems.append("queue.replicas: must be between 1 and 5 (3 for a JetStream cluster)")
    if queue.ack_wait < 1:
        problems.append("queue.ack_wait: must be at least 1s")
    if queue.max_ack_pending < 1:
        problems.append("queue.max_ack_pending: must be a positive number")
    if importlib.util.find_spec("nats") is None:
        problems.append(
            "queue.backend: \"nats\" needs the NATS client: pip install 'crossdock[nats]'"
        )
    return problems


@frozen
class LogConfig:
    """``[log]``: level and format of the daemon's logs."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "text"] = "json"


@frozen
class Config:
    """A validated configuration, bound to the installed plugins' types.

    ``base_dir`` is the directory relative paths were resolved against; ``path`` the file read
    (``None`` for :func:`parse_config`).
    """

    server: ServerConfig = field(factory=ServerConfig)
    queue: QueueConfig = field(factory=QueueConfig)
    log: LogConfig = field(factory=LogConfig)
    sources: tuple[Source, ...] = ()
    destinations: tuple[Destination, ...] = ()
    base_dir: Path = field(factory=Path.cwd)
    path: Path | None = None
    env_values: tuple[Secret, ...] = field(default=(), repr=False)

    def source(self, id: str) -> Source:
        """The source with ``id`` (``KeyError`` if none)."""
        for source in self.sources:
            if source.id == id:
                return source
        raise KeyError(id)

    def destination(self, id: str) -> Destination:
        """The destination with ``id`` (``KeyError`` if none)."""
        for destination in self.destinations:
            if destination.id == id:
                return destination
        raise KeyError(id)

    def secrets(self) -> list[Secret]:
        """Every secret in the configuration, for redaction: each :class:`~crossdock.Secret`
        field, plus every value that came from an environment variable."""
        found: dict[Secret, None] = {}
        roots: list[Any] = [self.server, self.queue]
        roots += [s.settings for s in self.sources]
        roots += [d.settings for d in self.destinations]
        for root in roots:
            for secret in find_secrets(root):
                found[secret] = None
        for secret in self.env_values:
            found[secret] = None
        for root in roots:
            for _, text in walk(root):
                if isinstance(text, str):
                    for secret in url_credentials(text):
                        found[secret] = None
        return list(found)


def url_credentials(text: str) -> list[Secret]:
    """The credentials a URL carries (``scheme://user:password@host``), as secrets: the password
    and the ``user:password`` pair an HTTP client sends base64-encoded in ``Basic`` auth."""
    if "://" not in text or "@" not in text:
        return []
    try:
        parts = urlsplit(text.strip())
        user, password = parts.username, parts.password
    except ValueError:
        return []
    if not password:
        return []
    user, password = unquote(user or ""), unquote(password)
    return [Secret(password), Secret(f"{user}:{password}")]


def empty_secrets(value: Any, path: str) -> list[str]:
    """A problem for every empty :class:`~crossdock.Secret` inside ``value``, named by its path.

    An empty credential never means "no check": leave the setting out to turn a check off. A
    key from an unset-but-empty variable would otherwise accept anyone (``Basic Og==``).
    """
    problems: list[str] = []
    for parts, leaf in walk(value):
        if isinstance(leaf, Secret) and not leaf.reveal().strip():
            where = path
            for part in parts:
                where = join_path(where, part)
            problems.append(f"{where}: empty credential (leave the setting out to turn it off)")
    return problems


# ---------------------------------------------------------------------------------------------
# ${VAR} expansion

_REF = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{")
FILE_SUFFIX = "_FILE"


@frozen
class Expanded:
    """The result of :func:`expand_env`: the data, problems, the values substituted, and the paths
    whose value could not be expanded (their other problems are not worth reporting)."""

    data: Any
    problems: list[str]
    values: list[str]
    failed: set[str]


def expand_env(data: Any, env: Mapping[str, str], path: str = "") -> Expanded:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string of ``data`` (recursively).

    ``VAR`` comes from ``env``; when it is not set but ``VAR_FILE`` is, the value is the content
    of that file with trailing newlines stripped (the container secrets convention). Setting both
    is a problem. ``${VAR:-default}`` gives ``default`` (literal text) when neither is set or
    ``VAR`` is empty. ``$${`` is a literal ``${``. Values from the environment and from files are
    listed in :attr:`Expanded.values` (they are secrets); defaults are not.
    """
    problems: list[str] = []
    values: list[str] = []
    failed: set[str] = set()
    files: dict[str, str | None] = {}

    def from_file(name: str, label: str) -> str | None:
        file = env[name + FILE_SUFFIX]
        if file not in files:
            try:
                files[file] = Path(file).read_text(encoding="utf-8").rstrip("\r\n")
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(
                    f"{label}: {name}{FILE_SUFFIX}: cannot read {file}: {type(exc).__name__}"
                )
                files[file] = None
        return files[file]

    def one(text: str, where: str) -> str:
        def sub(match: re.Match[str]) -> str:
            token = match.group(0)
            if token == "$${":
                return "${"
            name, default = match.group(1), match.group(2)
            label = where or "(top level)"
            if name is None:
                problems.append(
                    f"{label}: invalid ${{...}} reference (write $${{ for a literal ${{)"
                )
                failed.add(where)
                return ""
            value: str | None = env.get(name)
            if name + FILE_SUFFIX in env:
                if value is not None:
                    problems.append(f"{label}: set {name} or {name}{FILE_SUFFIX}, not both")
                    failed.add(where)
                    return ""
                value = from_file(name, label)
                if value is None:
                    failed.add(where)
                    return ""
            if default is not None and not value:
                return default
            if value is None:
                problems.append(f"{label}: environment variable {name} is not set")
                failed.add(where)
                return ""
            values.append(value)
            return value

        return _REF.sub(sub, text) if "$" in text else text

    def walk(value: Any, where: str) -> Any:
        if isinstance(value, str):
            return one(value, where)
        if isinstance(value, dict):
            return {k: walk(v, join_path(where, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, join_path(where, i)) for i, v in enumerate(value)]
        return value

    return Expanded(walk(data, path), problems, values, failed)


# ---------------------------------------------------------------------------------------------
# Loading


def load_config(
    path: str | os.PathLike[str], registry: Registry, env: Mapping[str, str] | None = None
) -> Config:
    """Read and validate the config file at ``path``; raise :class:`ConfigError` with every problem.

    Relative paths in it (``queue.path``, settings fields typed :class:`pathlib.Path`) are
    resolved against the file's directory. ``env`` defaults to ``os.environ``.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        problem = f"{file}: file not found (write one with `crossdock init`)"
        raise ConfigError([problem]) from None
    except (OSError, UnicodeDecodeError) as exc:
        problem = f"{file}: cannot read: {type(exc).__name__}"
        raise ConfigError([problem]) from None
    return parse_config(text, registry, env, base_dir=file.resolve().parent, _path=file)


def parse_config(
    text: str,
    registry: Registry,
    env: Mapping[str, str] | None = None,
    base_dir: str | os.PathLike[str] | None = None,
    *,
    _path: Path | None = None,
) -> Config:
    """Validate TOML ``text`` against ``registry``; raise :class:`ConfigError` with every problem.

    ``base_dir`` (default: the current directory) resolves relative paths.
    """
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        problem = f"{_path or 'config'}: invalid TOML: {exc}"
        raise ConfigError([problem]) from None
    base = Path(base_dir).resolve() if base_dir is not None else Path.cwd()
    expanded = expand_env(raw, os.environ if env is None else env)
    builder = _Builder(registry, base)
    config = builder.build(expanded.data)
    problems = [p for p in builder.problems if not _under(p, expanded.failed)]
    problems += expanded.problems
    if problems or config is None:
        raise ConfigError(problems)
    values = tuple(Secret(v) for v in dict.fromkeys(expanded.values) if v)
    return attrs.evolve(config, path=_path, env_values=values)


def _under(problem: str, failed: set[str]) -> bool:
    where = problem.partition(": ")[0]
    return any(where == f or where.startswith((f + ".", f + "[")) for f in failed)


_TOP_KEYS = ("server", "queue", "log", "sources", "destinations")
_SOURCE_KEYS = ("id", "type", "path", "mapping", "tables")
_DESTINATION_KEYS = (
    "id",
    "plugin",
    "sources",
    "where",
    "settings",
    "mapping",
    "tables",
    "delivery",
)
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class _Builder:
    """Collects problems while structuring one configuration."""

    def __init__(self, registry: Registry, base_dir: Path) -> None:
        self.registry = registry
        # functions every plugin offers to all mappings (crossdock_jmespath_functions)
        self.shared: tuple[Any, ...] = tuple(registry.shared_functions)
        self.base_dir = base_dir
        self.problems: list[str] = []

    def build(self, data: dict[str, Any]) -> Config | None:
        for key in data:
            if key not in _TOP_KEYS:
                self.problems.append(f"{join_path('', key)}: unknown key")
        server = self.section(data, "server", ServerConfig)
        queue = self.section(data, "queue", QueueConfig)
        log = self.section(data, "log", LogConfig)
        if server is not None:
            self.problems += empty_secrets(server, "server")
        if queue is not None:
            self.problems += _queue_problems(data.get("queue"), queue)
            queue = attrs.evolve(queue, path=self.resolve(queue.path))
        public_url = "http://127.0.0.1:8088"
        if server is not None:
            public_url = server.public_url or f"http://{server.listen}"
        sources = [
            self.source(i, s, public_url) for i, s in enumerate(self.tables(data, "sources"))
        ]
        raw_ids = [_get_id(s) for s in self.tables(data, "sources", report=False)]
        known_ids = list(dict.fromkeys(i for i in raw_ids if i is not None))
        destinations = [
            self.destination(i, d, known_ids)
            for i, d in enumerate(self.tables(data, "destinations"))
        ]
        self.unique("sources", [_get_id(s) for s in self.tables(data, "sources", report=False)])
        self.distinct_routes(sources)
        self.unique(
            "destinations", [_get_id(d) for d in self.tables(data, "destinations", report=False)]
        )
        if server is None or queue is None or log is None or self.problems:
            return None
        return Config(
            server=server,
            queue=queue,
            log=log,
            sources=tuple(s for s in sources if s is not None),
            destinations=tuple(d for d in destinations if d is not None),
            base_dir=self.base_dir,
        )

    # -- helpers --------------------------------------------------------------------------

    def section(self, data: dict[str, Any], name: str, cl: type[Any]) -> Any:
        value, problems = structure_collect(data.get(name, {}), cl, name)
        self.problems += problems
        return value

    def tables(self, data: dict[str, Any], name: str, *, report: bool = True) -> list[Any]:
        value = data.get(name, [])
        if not isinstance(value, list):
            if report:
                self.problems.append(f"{name}: expected a list of tables ([[{name}]])")
            return []
        return value

    def distinct_routes(self, sources: list[Source | None]) -> None:
        """Two sources cannot serve the same routes: one ``segment`` source, distinct paths."""
        seen: dict[str, int] = {}
        for i, source in enumerate(sources):
            if source is None:
                continue
            key = "/v1/*" if source.type == "segment" else source.path
            if key is None:
                continue
            if key in seen:
                self.problems.append(
                    f"sources[{i}].path: {key} is already served by sources[{seen[key]}]"
                )
            else:
                seen[key] = i

    def unique(self, name: str, ids: list[str | None]) -> None:
        first: dict[str, int] = {}
        for i, id_ in enumerate(ids):
            if id_ is None:
                continue
            if id_ in first:
                self.problems.append(
                    f'{name}[{i}].id: duplicate id "{id_}" (also {name}[{first[id_]}])'
                )
            else:
                first[id_] = i

    def id(self, table: dict[str, Any], prefix: str) -> str | None:
        if "id" not in table:
            self.problems.append(f"{prefix}.id: missing")
            return None
        value = table["id"]
        if not isinstance(value, str) or not _ID_RE.match(value):
            self.problems.append(
                f"{prefix}.id: expected a name of letters, digits, '-', '_' or '.'"
            )
            return None
        return value

    def string(self, table: dict[str, Any], key: str, prefix: str, *, required: bool) -> str | None:
        if key not in table:
            if required:
                self.problems.append(f"{prefix}.{key}: missing")
            return None
        value = table[key]
        if not isinstance(value, str):
            self.problems.append(f"{prefix}.{key}: expected a string")
            return None
        return value

    def resolve(self, path: Path) -> Path:
        return path if path.is_absolute() else self.base_dir / path

    def resolve_paths(self, settings: Any, *, str_path: bool = False) -> Any:
        """Resolve each relative :class:`~pathlib.Path` field of ``settings`` against base_dir."""
        if not attrs.has(type(settings)):
            return settings
        changes = {}
        for a in attrs.fields(type(settings)):
            value = getattr(settings, a.name, None)
            if a.init and isinstance(value, PurePath) and not value.is_absolute():
                changes[a.alias] = self.resolve(Path(value))
            elif str_path and a.init and a.name == "path" and isinstance(value, str) and value:
                # a destination's ``path`` setting is a file (the built-in ``file`` destination)
                changes[a.alias] = str(self.resolve(Path(value)))
        return attrs.evolve(settings, **changes) if changes else settings

    def mapping(self, value: Any, prefix: str) -> dict[str, Any] | None:
        """A raw mapping table (nested tables allowed; expressions are checked later)."""
        if not isinstance(value, dict):
            self.problems.append(f"{prefix}: expected a table of field = expression")
            return None
        return dict(value)

    def validate_mapping(
        self,
        fields: Mapping[str, Any],
        prefix: str,
        tables: Mapping[str, Any] | None = None,
        functions: Sequence[Any] = (),
    ) -> None:
        from crossdock.transform.mapping import validate_mapping

        self.problems += list(validate_mapping(fields, prefix, tables=tables, functions=functions))

    def validate_where(
        self,
        where: str,
        prefix: str,
        tables: Mapping[str, Any] | None,
        functions: Sequence[Any] = (),
    ) -> None:
        from crossdock.transform.mapping import validate_expression

        self.problems += list(
            validate_expression(where, prefix, tables=tables, functions=functions)
        )

    def type_of(self, kind: str, key: str, name: str, prefix: str) -> Any:
        known = self.registry.source_types if kind == "source" else self.registry.destination_types
        if name in known:
            return known[name]
        conflicts = getattr(self.registry, "conflicts", {}).get((kind, name))
        if conflicts:
            self.problems.append(
                f'{prefix}.{key}: {kind} type "{name}" is declared by several plugins: '
                + ", ".join(conflicts)
            )
            return None
        listing = ", ".join(sorted(known)) or "none installed"
        self.problems.append(f'{prefix}.{key}: unknown {kind} type "{name}" (known: {listing})')
        return None

    # -- sources ----------------------------------------------------------------------------

    def source(self, i: int, table: Any, public_url: str) -> Source | None:
        prefix = f"sources[{i}]"
        if not isinstance(table, dict):
            self.problems.append(f"{prefix}: expected a table")
            return None
        n = len(self.problems)
        id_ = self.id(table, prefix)
        type_name = self.string(table, "type", prefix, required=True)
        path = self.string(table, "path", prefix, required=False)
        if path is not None and not path.startswith("/"):
            self.problems.append(f"{prefix}.path: must start with /")
        mapping = None
        if "mapping" in table:
            mapping = self.mapping(table["mapping"], f"{prefix}.mapping")
        st: SourceType | None = None
        if type_name is not None:
            st = self.type_of("source", "type", type_name, prefix)
        if st is None:
            return None
        rest = {k: v for k, v in table.items() if k not in _SOURCE_KEYS}
        settings, problems = structure_collect(rest, st.settings, prefix)
        self.problems += problems
        if settings is not None:
            self.problems += empty_secrets(settings, prefix)
        spec: MappingFile | None = None
        if isinstance(st.mapping, MappingFile):
            from crossdock.transform.overrides import merge_spec

            # a mapping file: overrides and tables merge as a destination's do
            tables = self.extra_tables(table.get("tables", {}), f"{prefix}.tables")
            spec, problems = merge_spec(
                st.mapping,
                mapping,
                tables=tables,
                functions=(*self.shared, *st.functions),
                prefix=f"{prefix}.mapping",
            )
            self.problems += problems
            mapping = spec.fields
        else:
            if "tables" in table:
                self.problems.append(f"{prefix}.tables: unknown key (the type has no mapping file)")
            if mapping is not None:
                self.validate_mapping(
                    mapping, f"{prefix}.mapping", functions=(*self.shared, *st.functions)
                )
            if st.mapping is not None or mapping is not None:
                mapping = _merge(dict(st.mapping or {}), mapping or {})
        if len(self.problems) > n or id_ is None:
            return None
        return Source(
            id=id_,
            type=st.name,
            path=path if path is not None else st.default_path,
            settings=self.resolve_paths(settings, str_path=True),
            mapping=mapping,
            public_url=public_url,
            functions=(*self.shared, *st.functions),
            spec=spec,
        )

    # -- destinations -------------------------------------------------------------------------

    def destination(self, i: int, table: Any, source_ids: list[str]) -> Destination | None:
        prefix = f"destinations[{i}]"
        if not isinstance(table, dict):
            self.problems.append(f"{prefix}: expected a table")
            return None
        n = len(self.problems)
        for key in table:
            if key not in _DESTINATION_KEYS:
                self.problems.append(f"{join_path(prefix, key)}: unknown key")
        id_ = self.id(table, prefix)
        plugin = self.string(table, "plugin", prefix, required=True)
        where = self.string(table, "where", prefix, required=False)
        sources = self.destination_sources(table, prefix, source_ids)
        overrides: dict[str, Any] = {}
        if "mapping" in table:
            overrides = self.mapping(table["mapping"], f"{prefix}.mapping") or {}
        tables = self.extra_tables(table.get("tables", {}), f"{prefix}.tables")
        delivery = self.delivery(table.get("delivery", {}), f"{prefix}.delivery")
        dt: DestinationType | None = None
        if plugin is not None:
            dt = self.type_of("destination", "plugin", plugin, prefix)
        from crossdock.transform.overrides import merge_spec

        settings: Any = None
        if dt is not None:
            raw_settings = table.get("settings", {})
            settings, problems = structure_collect(raw_settings, dt.settings, f"{prefix}.settings")
            self.problems += problems
            if settings is not None:
                self.problems += empty_secrets(settings, f"{prefix}.settings")
            if settings is not None:
                settings = self.resolve_paths(settings, str_path=True)
        # the merged spec is validated whole: an override may conflict with a default target
        # (a.b vs a); problems carry the override's path (mapping.sections.x.fields.y)
        spec, problems = merge_spec(
            dt.spec if dt else MappingFile(fields={}),
            overrides,
            tables=tables,
            functions=(*self.shared, *dt.functions) if dt else self.shared,
            prefix=f"{prefix}.mapping",
            renamed=dt.renamed if dt else None,
            settings=settings,  # the settings table: mappings may depend on them
        )
        self.problems += problems
        if where is not None:
            self.validate_where(
                where,
                f"{prefix}.where",
                spec.tables,
                (*self.shared, *dt.functions) if dt else self.shared,
            )
        if dt is None:
            return None
        if len(self.problems) > n or id_ is None or delivery is None:
            return None
        return Destination(
            id=id_,
            plugin=dt.name,
            type=dt,
            settings=settings,
            mapping=spec.fields,
            tables=spec.tables,
            where=where,
            sources=sources,
            delivery=delivery,
            sections=spec.sections,
            select=spec.select,
            shared_functions=self.shared,
        )

    def destination_sources(
        self, table: dict[str, Any], prefix: str, source_ids: list[str]
    ) -> tuple[str, ...] | None:
        if "sources" not in table:
            return None
        value = table["sources"]
        if not isinstance(value, list):
            self.problems.append(f"{prefix}.sources: expected a list of source ids")
            return None
        for j, item in enumerate(value):
            if not isinstance(item, str):
                self.problems.append(f"{prefix}.sources[{j}]: expected a string")
            elif item not in source_ids:
                listing = ", ".join(source_ids) or "none configured"
                self.problems.append(
                    f'{prefix}.sources[{j}]: unknown source "{item}" (known: {listing})'
                )
        return tuple(v for v in value if isinstance(v, str))

    def extra_tables(self, value: Any, prefix: str) -> dict[str, dict[str, Any]]:
        if not isinstance(value, dict):
            self.problems.append(f"{prefix}: expected a table of lookup tables")
            return {}
        result: dict[str, dict[str, Any]] = {}
        for name, rows in value.items():
            if not isinstance(rows, dict):
                self.problems.append(f"{join_path(prefix, name)}: expected a table")
                continue
            result[name] = rows
        return result

    def delivery(self, value: Any, prefix: str) -> DeliverySettings | None:
        settings, problems = structure_collect(value, DeliverySettings, prefix)
        self.problems += problems
        if settings is None:
            return None
        if settings.ordering not in ("none", "per_user"):
            self.problems.append(f"{prefix}.ordering: must be one of none, per_user")
        positive = {
            "batch_size": settings.batch_size,
            "max_bytes": settings.max_bytes,
            "max_attempts": settings.max_attempts,
            "max_age": settings.max_age,
            "rate_limit": settings.rate_limit,
            "concurrency": settings.concurrency,
            "timeout": settings.timeout,
            "max_held_per_user": settings.max_held_per_user,
        }
        for key, number in positive.items():
            if number is not None and number <= 0:
                self.problems.append(f"{prefix}.{key}: must be a positive number")
        if settings.max_wait_ms < 0:
            self.problems.append(f"{prefix}.max_wait_ms: must not be negative")
        return settings


def _get_id(table: Any) -> str | None:
    if isinstance(table, dict) and isinstance(table.get("id"), str):
        return table["id"]
    return None


def _merge(default: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, str]:
    from crossdock.transform.mapping import merge_mapping

    return dict(merge_mapping(default, overrides))
