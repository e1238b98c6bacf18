"""Prometheus exposition for a service that may run as several worker processes
(`tiendo.serve.serve_workers`), through prometheus-client's multiprocess mode.

With one process each app keeps its own registry (tests build many apps in one process).
With several, `serve_workers` gives the workers a private directory in
PROMETHEUS_MULTIPROC_DIR before spawning them: prometheus-client then keeps every counter,
histogram and gauge value in a per-process file there, and any worker's /metrics sums the
files of all of them, so a scrape no longer depends on which worker took the connection.
"""

import os
from collections.abc import Callable, Iterable, Sequence

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

# prometheus-client's own variable: it chooses its value class by it when first imported.
MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def per_campaign(registry: CollectorRegistry, service: str, name: str, documentation: str) -> Gauge:
    """`tiendo_{service}_campaign_{name}{campaign}`: a gauge of each campaign's state (the
    pipeline board's "Đợt bị bỏ qua" reads them all). Campaigns are few: the label is
    bounded."""
    return Gauge(
        f"tiendo_{service}_campaign_{name}", documentation, ["campaign"], registry=registry
    )


def multiprocess_dir() -> str | None:
    """The directory the workers of this service share their metrics in, None when this
    process serves alone."""
    return os.environ.get(MULTIPROC_DIR_ENV) or None


class ProcessGauge(Collector):
    """A gauge read from a function at scrape time, about the process that answers the
    scrape: prometheus-client cannot share a `set_function` gauge between processes (the
    function lives in one of them), so with several workers it reports the scraped one,
    as /readyz does."""

    def __init__(self, name: str, documentation: str, registry: CollectorRegistry) -> None:
        self._name = name
        self._documentation = documentation
        # 0 until the lifespan wires the function: what an unset Gauge exported too
        self._function: Callable[[], float] = lambda: 0.0
        registry.register(self)

    def set_function(self, function: Callable[[], float]) -> None:
        self._function = function

    def describe(self) -> Iterable[GaugeMetricFamily]:
        # without it the registry would call collect() at registration, before the function
        return [GaugeMetricFamily(self._name, self._documentation)]

    def collect(self) -> Iterable[GaugeMetricFamily]:
        return [GaugeMetricFamily(self._name, self._documentation, value=self._function())]


def exposition(registry: CollectorRegistry, per_process: Sequence[Collector]) -> CollectorRegistry:
    """What /metrics serves: the app's `registry` in a process serving alone; among workers,
    every worker's metrics summed from the shared directory, plus `per_process` (collectors
    of `registry` that multiprocess mode cannot share, answering for this worker)."""
    path = multiprocess_dir()
    if path is None:
        return registry
    # Not `registry` itself: its metrics are in the directory already and would be
    # exported twice (prometheus-client's documented pitfall).
    exposed = CollectorRegistry(auto_describe=False)
    # prometheus-client leaves its multiprocess module unannotated
    MultiProcessCollector(exposed, path=path)  # type: ignore[no-untyped-call]
    for collector in per_process:
        exposed.register(collector)
    return exposed
