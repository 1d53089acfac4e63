"""The tiny random GPT-2 of tests/fixtures/tiny_llm.py, generating real tokens one at a time.

Peers that stand in for LLM servers serve it, so their streams are made by a real model (noise
words, real tokenizer, real KV cache) and stop when the client goes away. Torch is imported on
the first load, as a real server loads its model on demand.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any


class TinyLM:
    def __init__(self, folder: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self._torch = torch
        self.tokenizer: Any = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        self.model: Any = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True)
        self.model.eval()
        self.context = int(self.model.config.n_positions)
        # the fixture forbids role markers, which random weights would otherwise repeat
        self.suppressed = list(self.model.generation_config.suppress_tokens or [])

    @property
    def param_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.model.parameters())

    def prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True)
        if isinstance(ids, dict) or hasattr(ids, "input_ids"):
            ids = ids["input_ids"]
        return list(ids)

    def text_ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text)["input_ids"])

    async def generate(
        self, ids: list[int], *, max_new: int, temperature: float = 0.0, seed: int = 0
    ) -> AsyncIterator[tuple[str, int]]:
        """Yield ``(text delta, token id)`` for each new token until EOS or ``max_new``."""
        torch = self._torch
        room = self.context - max_new
        ids = ids[-room:] if room > 0 else ids[-1:]
        generator = torch.Generator().manual_seed(seed)
        state: dict[str, Any] = {"cache": None, "next": torch.tensor([ids])}
        produced: list[int] = []
        text = ""

        def step() -> int:
            with torch.no_grad():
                out = self.model(state["next"], cache=state["cache"], use_cache=True)
            state["cache"] = out.cache
            logits = out.logits[0, -1]
            logits[self.suppressed] = -float("inf")
            if temperature > 0:
                probs = torch.softmax(logits / temperature, dim=-1)
                token = int(torch.multinomial(probs, 1, generator=generator))
            else:
                token = int(torch.argmax(logits))
            state["next"] = torch.tensor([[token]])
            return token

        for _ in range(max_new):
            token = await asyncio.to_thread(step)
            if token == self.tokenizer.eos_token_id:
                return
            produced.append(token)
            decoded = self.tokenizer.decode(produced, skip_special_tokens=True)
            delta, text = decoded[len(text) :], decoded
            yield delta, token
