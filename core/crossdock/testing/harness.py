"""DestinationHarness: one destination built from a plugin, with its transform and deliverer.

Like Segment's ``testAction``: give the plugin (module or object with hookimpls) and a settings
dict as an operator would write it, then ``transform(event)`` with the default mapping (or the
plugin's own transformer) and ``await deliver(events)`` through the plugin's deliverer with a
real aiohttp session::

    async with FakeVendor() as fake, DestinationHarness(acme, {"api_key": "k",
                                                               "base_url": fake.url}) as h:
        assert await h.deliver([make_event()]) == [crossdock.DELIVERED]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
import orjson
import pluggy

from crossdock.deliver.outcomes import secrets_of
from crossdock.deliver.pacing import RateLimiter
from crossdock.deliver.sending import Sender
from crossdock.errors import ConfigError, PluginError
from crossdock.plugins import hookspecs
from crossdock.transform.overrides import merge_spec
from crossdock.transform.sections import compile_spec
from crossdock.types import (
    BatchItem,
    Deliverer,
    DeliverySettings,
    Destination,
    DestinationType,
    Event,
    Outcome,
    Transformer,
)

__all__ = ["DestinationHarness", "structure_settings"]


def structure_settings(dtype: DestinationType, settings: Any, path: str = "settings") -> Any:
    """Structure a settings dict into ``dtype.settings`` with the project's converter; raise
    :class:`~crossdock.ConfigError` listing every problem as ``settings.<field>: <message>``.
    An already-structured settings object is returned as is."""
    if isinstance(settings, dtype.settings):
        return settings
    from crossdock.config.converter import structure_collect

    value, problems = structure_collect(dict(settings), dtype.settings, path)
    if problems:
        raise ConfigError(problems)
    return value


def _plugin_manager(plugin: Any) -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(plugin)
    return pm


def destination_types(plugin: Any) -> list[DestinationType]:
    """The destination types a plugin module declares."""
    pm = _plugin_manager(plugin)
    return [t for result in pm.hook.crossdock_destination_types() for t in result]


class DestinationHarness:
    """A destination of ``plugin`` (a module or object with hookimpls) configured by ``settings``.

    ``name`` picks the destination type when the plugin declares several. ``mapping`` overrides
    fields of the type's default mapping; ``where``, ``tables``, ``delivery`` and ``id`` are as in
    ``[[destinations]]``. ``http`` is an aiohttp session to use (one is made and closed otherwise).
    ``limiter`` paces the requests :meth:`deliver` sends (default: none, tests run at full speed).
    """

    def __init__(
        self,
        plugin: Any,
        settings: Any,
        *,
        name: str | None = None,
        id: str = "test",
        mapping: Mapping[str, str] | None = None,
        where: str | None = None,
        tables: Mapping[str, Mapping[str, Any]] | None = None,
        delivery: DeliverySettings | None = None,
        http: aiohttp.ClientSession | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.plugin = plugin
        self._pm = _plugin_manager(plugin)
        types = [t for result in self._pm.hook.crossdock_destination_types() for t in result]
        if name is not None:
            types = [t for t in types if t.name == name]
        if len(types) != 1:
            raise PluginError(str(plugin), f"expected one destination type named {name!r}")
        self.type: DestinationType = types[0]
        # Overrides and table rows merge exactly as ``[destinations.mapping]`` and
        # ``[destinations.tables.<name>]`` do (see crossdock.merge_spec).
        structured = structure_settings(self.type, settings)
        shared = tuple(f for found in self._pm.hook.crossdock_jmespath_functions() for f in found)
        spec, problems = merge_spec(
            self.type.spec,
            mapping or {},
            tables=tables or {},
            functions=(*shared, *self.type.functions),
            prefix="mapping",
            renamed=self.type.renamed,
            settings=structured,
        )
        if problems:
            raise ConfigError(problems)
        self.destination = Destination(
            id=id,
            plugin=self.type.name,
            type=self.type,
            settings=structured,
            mapping=spec.fields,
            tables=spec.tables,
            sections=spec.sections,
            select=spec.select,
            shared_functions=shared,
            where=where,
            delivery=delivery or DeliverySettings(),
        )
        self._http = http
        self._own_http = http is None
        self._transformer: Transformer | None = None
        self._deliverer: Deliverer | None = None
        self._limiter = limiter if limiter is not None else RateLimiter(None)
        self._sender: Sender | None = None

    @property
    def transformer(self) -> Transformer:
        """The plugin's transformer, or the default compiled JMESPath mapping."""
        if self._transformer is None:
            made = self._pm.hook.crossdock_make_transformer(destination=self.destination)
            if made is None:
                made = compile_spec(
                    self.destination.spec,
                    where=self.destination.where,
                    functions=self.destination.functions,
                )
            self._transformer = made
        return self._transformer

    def transform(self, event: Event) -> Any:
        """The payload the destination would send for ``event`` (``None``: dropped)."""
        return self.transformer(event)

    def items(self, events: Sequence[Event]) -> list[BatchItem]:
        """Transform and serialize ``events`` as the worker does (dropped ones are left out)."""
        out = []
        for event in events:
            payload = self.transform(event)
            if payload is not None:
                out.append(BatchItem(event, payload, orjson.dumps(payload)))
        return out

    async def deliverer(self) -> Deliverer:
        """The plugin's deliverer (built once, with the harness's HTTP session)."""
        if self._deliverer is None:
            if self._http is None:
                self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
            made = self._pm.hook.crossdock_make_deliverer(
                destination=self.destination, http=self._http
            )
            if made is None:
                raise PluginError(str(self.plugin), "crossdock_make_deliverer returned None")
            self._deliverer = made
        return self._deliverer

    async def sender(self) -> Sender:
        """The core's sender for this destination, as the worker and backfill use it."""
        if self._sender is None:
            self._sender = Sender.of(
                self.destination,
                await self.deliverer(),
                secrets=secrets_of(self.destination.settings),
                limiter=self._limiter,
            )
        return self._sender

    async def deliver(self, events: Sequence[Event]) -> list[Outcome]:
        """Transform ``events`` and send them as ONE batch; one outcome per non-dropped event
        (none, and no request, when every event was dropped)."""
        return await self.deliver_items(self.items(events))

    async def deliver_items(self, items: Sequence[BatchItem]) -> list[Outcome]:
        """Send prepared items as one batch the way the core does: through the rate limiter,
        with the events the vendor refused as a batch isolated (:class:`~crossdock.BatchRejected`
        never comes back; a lone refused event is :class:`~crossdock.Rejected`)."""
        if not items:
            return []
        sender = await self.sender()
        return await sender.deliver(list(items))

    async def close(self) -> None:
        """Close the deliverer and the session the harness made."""
        if self._deliverer is not None:
            await self._deliverer.close()
            self._deliverer = None
            self._sender = None
        if self._own_http and self._http is not None:
            await self._http.close()
            self._http = None

    async def __aenter__(self) -> DestinationHarness:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
