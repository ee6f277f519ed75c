"""A function-driven LLM for tests of our own policy (budgets, synthesis), no HTTP."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import BaseModel

from agents.llm import LLMError, PrefixHook, Price, Prompt, Reply, T, Usage

Answer = Callable[[Prompt, type[BaseModel]], BaseModel | LLMError]
Bill = Callable[[Prompt], Usage]


def flat_bill(prompt: Prompt) -> Usage:
    """Bill every call 1,000 tokens in and 200 out."""
    return Usage(input_tokens=1_000, output_tokens=200)


@dataclass
class FunctionLLM:
    """Answers each call with `answer(prompt, output)`; bills `usage` per call."""

    answer: Answer
    bill: Bill = flat_bill
    price: Price = field(default_factory=lambda: Price(input=3.0, output=15.0))
    model: str = "claude-sonnet-5-5"
    prompts: list[Prompt] = field(default_factory=list)

    async def ask(
        self, prompt: Prompt, output: type[T], *, on_prefix_cached: PrefixHook | None = None
    ) -> Reply[T]:
        """Record the prompt and return the function's answer, validated as `output`."""
        self.prompts.append(prompt)
        if on_prefix_cached is not None:
            on_prefix_cached()
        value = self.answer(prompt, output)
        if isinstance(value, LLMError):
            raise value
        checked = output.model_validate(value.model_dump())
        usage = self.bill(prompt)
        return Reply(checked, self.model, usage, self.price.cost(usage))

    def purposes(self) -> list[str]:
        """Return the purpose of every call so far, in order."""
        return [p.purpose for p in self.prompts]
