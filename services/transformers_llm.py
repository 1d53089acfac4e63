"""A chat LLM run in this process with Hugging Face transformers (CPU or a CUDA device).

For small instruction models on hosts without Ollama (e.g. Qwen2.5-0.5B-Instruct on a CPU) and
for tests. ``model`` is a local folder or a hub repository id (downloaded into the models
directory). Generation runs in a worker thread and streams text deltas; closing the stream
stops generation at the next token.

Parked, the model object is kept: on a CUDA device its weights move to pinned host memory (so
resuming is one fast copy back, no file read); on the CPU they stay where they are.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncGenerator, Iterator
from contextlib import aclosing
from pathlib import Path
from typing import Any, ClassVar

from services.base import ChatUsage, EngineSpec, ModelArtifact, Role
from services.errors import EngineCallError, InvalidInput
from services.in_process import InProcessEngine
from services.model_ref import local_path, missing_weights
from services.threads import iterate_in_thread

_REQUIRED = ("config.json", "tokenizer.json")
_PATTERNS = ("*.json", "*.safetensors", "tokenizer.model", "*.txt")
_WEIGHTS = ("*.safetensors",)


class TransformersChat(InProcessEngine):
    role = Role.LLM
    required_files: ClassVar[tuple[str, ...]] = _REQUIRED  # in the model's folder
    hub_patterns: ClassVar[tuple[str, ...]] = _PATTERNS  # what a download fetches

    def __init__(self, spec: EngineSpec) -> None:
        super().__init__(spec)
        self._model: Any = None
        self._tokenizer: Any = None

    def artifacts(self) -> list[ModelArtifact]:
        if local_path(self.spec.model) is not None:
            return []
        return [
            ModelArtifact(
                self.spec.model, self.hub_patterns, self.required_files, weight_globs=_WEIGHTS
            )
        ]

    def _folder(self) -> Path:
        path = local_path(self.spec.model)
        return path if path is not None else self.artifacts()[0].local_dir(self.spec.models_dir)

    def _model_paths(self) -> list[Path]:
        return [self._folder() / name for name in self.required_files]

    def _missing(self) -> list[str]:
        folder = self._folder()
        weights = missing_weights(folder, _WEIGHTS) if folder.is_dir() else []
        return super()._missing() + [str(folder / name) for name in weights]

    def _load_model(self) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder = str(self._folder())
        self._tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model: Any = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
        model.to(self.spec.device)
        self._model = model.eval()

    def _release_model(self) -> None:
        self._model = None
        self._tokenizer = None

    park_refusal = None

    def _park_model(self) -> None:
        if self.spec.device == "cpu":
            return  # already in host RAM: parking only stops serving
        import torch

        model = self._model.to("cpu")
        if torch.cuda.is_available():  # pinned pages copy back to the GPU at full speed
            for tensor in (*model.parameters(), *model.buffers()):
                tensor.data = tensor.data.pin_memory()
            torch.cuda.empty_cache()

    def _resume_model(self) -> None:
        if self.spec.device == "cpu":
            return
        import torch

        self._model.to(self.spec.device, non_blocking=True)
        torch.cuda.synchronize()
        release_pinned = getattr(torch._C, "_host_emptyCache", None)  # torch keeps freed pins
        if release_pinned is not None:
            release_pinned()

    def _is_loaded(self) -> bool:
        return self._model is not None

    def _prompt_inputs(self, messages: list[dict[str, Any]], room: int) -> Any:
        """Blocking (the generation thread): the model's inputs for ``messages``, at most
        ``room`` tokens (the most recent kept)."""
        inputs = self._tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        ).to(self._model.device)
        return _fit_context(inputs, room)

    reports_usage = True

    async def chat(
        self,
        messages: list[dict[str, Any]],
        *,
        options: dict[str, Any] | None = None,
        usage: ChatUsage | None = None,
    ) -> AsyncGenerator[str, None]:
        self._require_loaded()
        counted = usage if usage is not None else ChatUsage()
        if not messages:
            raise InvalidInput("no messages")
        settings = {**self.spec.options, **(options or {})}
        model, tokenizer = self._model, self._tokenizer
        stop = threading.Event()

        def generate() -> Iterator[str]:
            import torch
            from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

            class Stop(StoppingCriteria):
                """Stops on the caller's close; called once per new token, so it counts them."""

                def __call__(self, *args: Any, **kwargs: Any) -> bool:
                    counted.completion_tokens += 1
                    return stop.is_set()

            max_new = int(settings.get("max_new_tokens", 128))
            try:
                inputs = self._prompt_inputs(messages, _context_limit(model) - max_new)
            except Exception as exc:
                raise EngineCallError(
                    f"could not build the prompt: {exc}", engine=self.name
                ) from exc
            counted.prompt_tokens = int(inputs["input_ids"].shape[1])
            streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
            failure: list[BaseException] = []

            seed = settings.get("seed")

            def run(**kwargs: Any) -> None:
                try:
                    if seed is not None:  # best effort, as OpenAI's: the RNG is process-wide
                        torch.manual_seed(int(seed))
                    model.generate(**kwargs)
                except Exception as exc:  # surfaced in the caller's thread below
                    failure.append(exc)
                    streamer.end()  # type: ignore[no-untyped-call]

            kwargs = {
                **inputs,
                "streamer": streamer,
                "max_new_tokens": max_new,
                "min_new_tokens": min(int(settings.get("min_new_tokens", 0)), max_new),
                "do_sample": float(settings.get("temperature", 0.0)) > 0,
                "stopping_criteria": StoppingCriteriaList([Stop()]),
                "pad_token_id": tokenizer.eos_token_id,
            }
            if kwargs["do_sample"]:
                kwargs["temperature"] = float(settings["temperature"])
                if settings.get("top_p") is not None:
                    kwargs["top_p"] = float(settings["top_p"])
            worker = threading.Thread(
                target=run, kwargs=kwargs, name=f"generate-{self.name}", daemon=True
            )
            worker.start()
            try:
                for text in streamer:
                    if text:
                        yield text
            finally:
                stop.set()
                worker.join()
            if counted.completion_tokens >= max_new:
                counted.finish_reason = "length"
            if failure:
                raise EngineCallError(f"generation failed: {failure[0]}", engine=self.name) from (
                    failure[0]
                )

        async with aclosing(iterate_in_thread(generate)) as stream:
            async for delta in stream:
                yield delta


def _context_limit(model: Any) -> int:
    config = model.config
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return 1 << 30


def _fit_context(inputs: Any, room: int) -> Any:
    """Keep the prompt's most recent tokens when it would overflow the model's context."""
    length = int(inputs["input_ids"].shape[1])
    if room <= 0 or length <= room:
        return inputs
    return {key: value[:, length - room :] for key, value in inputs.items()}
