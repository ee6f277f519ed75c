"""A per-review token and cost budget that every model call draws on before it is made."""

from __future__ import annotations

from dataclasses import dataclass, field

from agents.llm import FATAL, LLM, LLMError, PrefixHook, Price, Prompt, Reply, T, Usage
from agents.prompts import CHARS_PER_TOKEN

# A tool schema and message framing the prompt text does not show, in tokens.
_OVERHEAD_TOKENS = 600


@dataclass(frozen=True)
class Limits:
    """What one review may spend on model calls; None means no limit."""

    max_tokens: int | None = 400_000
    max_cost_usd: float | None = 1.00


@dataclass
class Meter:
    """Spent and reserved tokens and dollars of one review (single event loop, no locks)."""

    limits: Limits = field(default_factory=Limits)
    # The dearest configured price: a reservation must cover the worst case.
    price: Price = field(default_factory=lambda: Price(input=3.0, output=15.0))
    used: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    refused: int = 0
    _held_tokens: int = 0
    _held_cost: float = 0.0

    def worst_case(self, prompt: Prompt) -> tuple[int, float]:
        """Return the most tokens and dollars `prompt` can cost (every input token a cache write)."""
        chars = len(prompt.rules) + len(prompt.shared) + len(prompt.task)
        prompt_tokens = chars // CHARS_PER_TOKEN + _OVERHEAD_TOKENS
        usage = Usage(cache_write_tokens=prompt_tokens, output_tokens=prompt.max_tokens)
        return prompt_tokens + prompt.max_tokens, self.price.cost(usage)

    def reserve(self, prompt: Prompt) -> tuple[int, float]:
        """Hold the worst case of `prompt`, or refuse it when the budget cannot cover it."""
        tokens, cost = self.worst_case(prompt)
        limit = self.limits
        over_tokens = limit.max_tokens is not None and (
            self.used.prompt_tokens + self.used.output_tokens + self._held_tokens + tokens
            > limit.max_tokens
        )
        over_cost = limit.max_cost_usd is not None and (
            self.cost_usd + self._held_cost + cost > limit.max_cost_usd
        )
        if over_tokens or over_cost:
            self.refused += 1
            what = "token" if over_tokens else "cost"
            raise LLMError("budget", f"over the review's {what} budget ({prompt.purpose})")
        self._held_tokens += tokens
        self._held_cost += cost
        return tokens, cost

    def settle(self, held: tuple[int, float], usage: Usage, cost_usd: float) -> None:
        """Release a reservation and book what the call really used."""
        self._held_tokens -= held[0]
        self._held_cost -= held[1]
        self.used = self.used + usage
        self.cost_usd += cost_usd

    @property
    def tokens(self) -> int:
        """Return every token spent so far."""
        return self.used.prompt_tokens + self.used.output_tokens


@dataclass
class MeteredLLM:
    """An LLM that asks the meter before every call and books what each call cost.

    After a fatal error (a rejected key, no credit, no such model) it makes no more
    calls for this review: the next ones fail at once with the same reason, so a bad
    key costs one request and is reported once.
    """

    inner: LLM
    meter: Meter
    fatal: LLMError | None = None

    async def ask(
        self, prompt: Prompt, output: type[T], *, on_prefix_cached: PrefixHook | None = None
    ) -> Reply[T]:
        """Reserve the worst case, call, then book the real usage, failed calls included."""
        if self.fatal is not None:
            raise LLMError(self.fatal.kind, str(self.fatal))
        held = self.meter.reserve(prompt)
        try:
            reply = await self.inner.ask(prompt, output, on_prefix_cached=on_prefix_cached)
        except LLMError as exc:
            self.meter.settle(held, exc.usage, exc.cost_usd)
            if exc.kind in FATAL:
                self.fatal = exc
            raise
        except BaseException:
            self.meter.settle(held, Usage(), 0.0)  # cancelled: what it used is unknown
            raise
        self.meter.settle(held, reply.usage, reply.cost_usd)
        return reply


def context_tokens(limits: Limits, specialists: int, per_specialist: int, price: Price) -> int:
    """Size the shared diff so every specialist's call fits with room left for synthesis.

    Synthesis (verification, assessment) is the optional part: it gets what is left
    after the specialists, and is dropped first when the budget runs short.
    """
    if specialists == 0:
        return per_specialist
    share = per_specialist
    if limits.max_tokens is not None:
        share = min(share, int(limits.max_tokens * 0.8) // specialists - 5_000)
    if limits.max_cost_usd is not None:
        per_call = limits.max_cost_usd * 0.8 / specialists
        output_cost = 4096 * price.output / 1_000_000
        per_token = price.input * price.cache_write / 1_000_000
        share = min(share, int((per_call - output_cost) / per_token) - _OVERHEAD_TOKENS - 1_000)
    return max(0, share)
