"""Prometheus metrics of the App: deliveries, reviews, specialists, tokens, cost, queue depth."""

from __future__ import annotations

from typing import Literal

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from agents.model import AgentReport, Review

ReviewOutcome = Literal["posted", "superseded", "failed", "retried"]

# A delivery is answered in milliseconds (DESIGN.md §6); GitHub gives up after 10 s.
_DELIVERY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# A specialist runs analyzers and perhaps a model call: from milliseconds to minutes.
_SPECIALIST_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
# Agent statuses that count as a specialist's failure.
_FAILED = frozenset({"failed", "timed_out"})


class Metrics:
    """Own one registry (not the process-wide one, so tests can build many apps)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._declare_webhook()
        self._declare_reviews()

    def _declare_webhook(self) -> None:
        """Declare the receiver's metrics."""
        self.deliveries = Counter(
            "pr_council_webhook_deliveries",
            "Webhook deliveries answered, by event and outcome.",
            ("event", "outcome"),
            registry=self.registry,
        )
        self.delivery_seconds = Histogram(
            "pr_council_webhook_seconds",
            "Time to answer a webhook delivery.",
            buckets=_DELIVERY_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "pr_council_queue_depth", "Review jobs queued or running.", registry=self.registry
        )

    def _declare_reviews(self) -> None:
        """Declare the metrics of reviews and of each specialist."""
        r = self.registry
        self.reviews = Counter(
            "pr_council_reviews", "Review jobs by outcome.", ("outcome",), registry=r
        )
        self.specialist_seconds = Histogram(
            "pr_council_specialist_seconds",
            "Wall time of one specialist in one review.",
            ("agent",),
            buckets=_SPECIALIST_BUCKETS,
            registry=r,
        )
        self.tokens = Counter("pr_council_tokens", "Model tokens.", ("agent", "kind"), registry=r)
        self.cost = Counter(
            "pr_council_cost_usd", "Model cost in US dollars.", ("agent",), registry=r
        )
        self.failures = Counter(
            "pr_council_failures", "Specialists that failed or timed out.", ("agent",), registry=r
        )

    def observe_delivery(self, event: str, outcome: str, seconds: float) -> None:
        """Count one answered delivery (`event` must have bounded values) and its latency."""
        self.deliveries.labels(event=event, outcome=outcome).inc()
        self.delivery_seconds.observe(max(0.0, seconds))

    def observe_review(self, outcome: ReviewOutcome, review: Review | None) -> None:
        """Count one review job's outcome, with its specialists' time, tokens and cost if any."""
        self.reviews.labels(outcome=outcome).inc()
        for report in review.agents if review else ():
            self._observe_agent(report)

    def _observe_agent(self, report: AgentReport) -> None:
        """Record one specialist's latency, tokens, cost and failure."""
        agent = report.agent
        if report.status != "skipped":
            self.specialist_seconds.labels(agent=agent).observe(report.duration_ms / 1000)
        self.tokens.labels(agent=agent, kind="input").inc(max(0, report.input_tokens))
        self.tokens.labels(agent=agent, kind="output").inc(max(0, report.output_tokens))
        self.cost.labels(agent=agent).inc(max(0.0, report.cost_usd))
        if report.status in _FAILED:
            self.failures.labels(agent=agent).inc()

    def set_queue_depth(self, depth: int) -> None:
        """Record how many jobs are queued or running."""
        self.queue_depth.set(depth)

    def render(self) -> tuple[bytes, str]:
        """Return the registry in Prometheus text format, with its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
