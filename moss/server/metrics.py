"""Prometheus metrics of the server: requests, tokens, queue depth, latencies."""

from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 40, 80, 160)


class Metrics:
    def __init__(self, queued: Callable[[], float], active: Callable[[], float]):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("moss_requests", "HTTP requests by route and status",
                                ["route", "status"], registry=r)
        self.tokens = Counter("moss_tokens", "Tokens processed", ["kind"], registry=r)
        self.cancelled = Counter("moss_generations_cancelled", "Generations stopped early "
                                 "(client gone or stop)", registry=r)
        self.latency = Histogram("moss_request_seconds", "Time to the whole answer",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram("moss_time_to_first_token_seconds", "Time to the first token, "
                              "queueing included", buckets=LATENCY_BUCKETS, registry=r)
        Gauge("moss_queue_depth", "Requests waiting for a decoding slot",
              registry=r).set_function(queued)
        Gauge("moss_active_sequences", "Sequences being decoded", registry=r).set_function(active)

    def render(self) -> bytes:
        return generate_latest(self.registry)
