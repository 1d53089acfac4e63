"""A vision-language model run in this process with Hugging Face transformers.

For small VLMs on hosts without Ollama (SmolVLM, Qwen2-VL-2B, LLaVA-style checkpoints on a CPU)
and for tests. ``model`` is a local folder or a hub repository id, loaded with
``AutoProcessor`` (tokenizer, image processor, chat template) and
``AutoModelForImageTextToText``. Everything else is the LLM adapter's: generation in a worker
thread streaming text deltas, closing the stream stops it at the next token, and parking keeps
the model object with its weights in host RAM (``services.transformers_llm``).

A message's images (``services.vision``) are decoded with Pillow and given to the processor in
order; the chat template sees each as an ``{"type": "image"}`` part before the message's text,
which is how the templates of LLaVA, Qwen2-VL and Idefics place them.
"""

from __future__ import annotations

import io
from typing import Any, ClassVar

from services.base import Role
from services.transformers_llm import TransformersChat
from services.vision import images_of

# A processor's files: ``preprocessor_config.json`` (older checkpoints) or
# ``processor_config.json``; the chat template inside ``tokenizer_config.json`` or apart.
_PATTERNS = ("*.json", "*.safetensors", "tokenizer.model", "*.txt", "*.jinja")


class TransformersVision(TransformersChat):
    role = Role.VLM
    vision = True
    hub_patterns: ClassVar[tuple[str, ...]] = _PATTERNS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._processor: Any = None

    def _load_model(self) -> None:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        folder = str(self._folder())
        processor: Any = AutoProcessor.from_pretrained(  # type: ignore[no-untyped-call]
            folder, local_files_only=True
        )
        model: Any = AutoModelForImageTextToText.from_pretrained(folder, local_files_only=True)
        model.to(self.spec.device)
        self._processor = processor
        self._tokenizer = processor.tokenizer
        self._model = model.eval()

    def _release_model(self) -> None:
        super()._release_model()
        self._processor = None

    def _prompt_inputs(self, messages: list[dict[str, Any]], room: int) -> Any:
        """The processor's inputs: the template's text with one image placeholder per image,
        and the pixels. Nothing is cut to fit (a cut could split an image's tokens): the API
        bounds the images and the history bounds the text."""
        from PIL import Image as PilImage

        conversation: list[dict[str, Any]] = []
        pictures: list[Any] = []
        for message in messages:
            images = images_of(message)
            parts: list[dict[str, Any]] = [{"type": "image"} for _ in images]
            parts.append({"type": "text", "text": str(message.get("content") or "")})
            conversation.append({"role": message["role"], "content": parts})
            for image in images:
                with PilImage.open(io.BytesIO(image.data)) as opened:
                    pictures.append(opened.convert("RGB"))
        prompt = self._processor.apply_chat_template(
            conversation, add_generation_prompt=True, tokenize=False
        )
        inputs = self._processor(text=prompt, images=pictures or None, return_tensors="pt")
        return inputs.to(self._model.device)
