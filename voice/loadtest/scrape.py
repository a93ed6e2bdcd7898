"""The server's side of a load test: its /metrics, read every few seconds into a time series.

RSS (process_resident_memory_bytes), CPU (process_cpu_seconds_total, as cores used since the
previous sample), sessions, asyncio tasks, threads, the admission limit and each engine's queue
delay. Behind a balancer this is whichever process answers the scrape; point `--metrics-url` at
one worker's own port to follow it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from urllib.parse import urlsplit, urlunsplit

import httpx
from prometheus_client.parser import text_string_to_metric_families

log = logging.getLogger(__name__)

GAUGES = {  # series name -> (metric sample name, scale)
    "rss_mb": ("process_resident_memory_bytes", 1 / 2**20),
    "sessions": ("voice_sessions_active", 1),
    "asyncio_tasks": ("voice_asyncio_tasks", 1),
    "threads": ("voice_threads", 1),
    "admission_limit": ("voice_admission_session_limit", 1),
}


def metrics_url(url: str) -> str:
    """ws://host:port/anything -> http://host:port/metrics (wss -> https)."""
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, "/metrics", "", ""))


def parse(text: str) -> dict[str, float | dict[str, float]]:
    """One scrape -> the values the report plots (cpu_s is cumulative; the sampler differentiates)."""
    values: dict[str, float] = {}
    delays: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "voice_engine_queue_delay_seconds":
                delays[sample.labels.get("engine", "?")] = round(sample.value * 1000, 1)
            elif sample.name == "process_cpu_seconds_total":
                values["cpu_s"] = sample.value
            else:
                values[sample.name] = sample.value
    out: dict[str, float | dict[str, float]] = {
        key: round(values[name] * scale, 1) for key, (name, scale) in GAUGES.items() if name in values}
    if "cpu_s" in values:
        out["cpu_s"] = values["cpu_s"]
    if delays:
        out["queue_delay_ms"] = delays
    return out


class MetricsSampler:
    """Scrapes until stopped; `series` holds one dict per sample with `t_s` (since `started`)."""

    def __init__(self, url: str, token: str | None, started: float, interval_s: float = 2.0):
        self.url = url
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.started = started
        self.interval_s = interval_s
        self.series: list[dict] = []
        self.failures = 0

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=5.0) as http:
            while True:
                await self.sample(http)
                await asyncio.sleep(self.interval_s)

    async def sample(self, http: httpx.AsyncClient) -> None:
        try:
            reply = await http.get(self.url, headers=self.headers)
            reply.raise_for_status()
        except httpx.HTTPError as e:
            self.failures += 1
            if self.failures == 1:
                log.warning("cannot read the server's metrics at %s: %s", self.url, e)
            return
        point = parse(reply.text)
        now = time.monotonic()
        point["t_s"] = round(now - self.started, 2)
        previous = next((p for p in reversed(self.series) if "cpu_s" in p), None)
        if previous is not None and "cpu_s" in point and point["t_s"] > previous["t_s"]:
            point["cpu_cores"] = round((point["cpu_s"] - previous["cpu_s"]) / (point["t_s"] - previous["t_s"]), 2)
        self.series.append(point)
