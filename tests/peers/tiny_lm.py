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


class TinyVisionLM:
    """The tiny random LLaVA of tests/fixtures/tiny_vlm.py, as a vision model's runner: the
    prompt's images (raw bytes, as Ollama decodes ``images``) go through its processor."""

    vision = True

    def __init__(self, folder: Path) -> None:
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self._torch = torch
        self.processor: Any = AutoProcessor.from_pretrained(str(folder), local_files_only=True)
        self.model: Any = AutoModelForImageTextToText.from_pretrained(
            str(folder), local_files_only=True
        ).eval()
        self.context = 512

    @property
    def param_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.model.parameters())

    async def chat(
        self, messages: list[dict[str, Any]], images: list[list[bytes]], *, max_new: int
    ) -> AsyncIterator[str]:
        """The reply's text deltas; each message's images before its text, in order."""
        import io

        from PIL import Image

        conversation, pictures = [], []
        for message, own in zip(messages, images, strict=True):
            parts: list[dict[str, Any]] = [{"type": "image"} for _ in own]
            parts.append({"type": "text", "text": str(message.get("content") or "")})
            conversation.append({"role": message["role"], "content": parts})
            pictures += [Image.open(io.BytesIO(data)).convert("RGB") for data in own]
        prompt = self.processor.apply_chat_template(
            conversation, add_generation_prompt=True, tokenize=False
        )
        inputs = self.processor(text=prompt, images=pictures or None, return_tensors="pt")
        length = int(inputs["input_ids"].shape[1])
        out = await asyncio.to_thread(
            self.model.generate, **inputs, max_new_tokens=max_new, do_sample=False
        )
        tokenizer, text = self.processor.tokenizer, ""
        for end in range(length + 1, int(out.shape[1]) + 1):
            decoded = tokenizer.decode(out[0, length:end], skip_special_tokens=True)
            delta, text = decoded[len(text) :], decoded
            if delta:
                yield delta
