"""Machine translation with CTranslate2 (``ctranslate2.Translator``), in this process.

``model`` is a folder converted by ``ct2-transformers-converter`` (``model.bin``,
``config.json``, the vocabulary) or a hub repository holding one. The text is tokenized by the
model's own ``transformers`` tokenizer: from the model folder when its files were copied there
(``--copy_files tokenizer.json tokenizer_config.json ...``), else from ``options.tokenizer`` (a
folder, or the original repository such as ``facebook/nllb-200-distilled-600M``, downloaded
beside the model). Three families, told apart by the tokenizer (or ``options.family``), as
CTranslate2's own guide drives them:

    family   source tokens                  target prefix    languages
    nllb     deu_Latn  text...  </s>        [fra_Latn]       FLORES-200 tokens it has
    m2m100   __de__    text...  </s>        [__fr__]         ISO tokens it has
    marian   text... </s>                   none             options.source_language ->
                                                             options.target_language

The prefix is dropped from the output. CPU by default (the sizing plan's place for it);
``device = "cuda"`` works the same. Parking is CTranslate2's own, as for faster-whisper:
``unload_model(to_cpu=True)`` keeps the weights in host RAM, ``load_model()`` copies them back.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from services.base import EngineSpec, ModelArtifact, Role
from services.errors import EngineCallError
from services.in_process import InProcessEngine
from services.model_ref import local_path
from services.translation import (
    NAMES,
    NLLB_CODES,
    Language,
    Translation,
    UnsupportedLanguage,
    canonical,
)

Family = Literal["nllb", "m2m100", "marian"]
_REQUIRED = ("config.json", "model.bin")
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "sentencepiece.bpe.model",
    "*.spm",
    "vocab.json",
)
_PATTERNS = (*_REQUIRED, "*vocabulary*", *_TOKENIZER_FILES)
_M2M_CODES = {"zh-Hans": "zh", "nb": "no"}  # LibreTranslate code -> M2M-100's where they differ


class CTranslate2Translator(InProcessEngine):
    role = Role.TRANSLATION
    park_refusal = None

    def __init__(self, spec: EngineSpec) -> None:
        super().__init__(spec)
        self._translator: Any = None
        self._tokenizer: Any = None
        self._family: Family = "nllb"
        self._tokens: dict[str, str] = {}  # language code -> the model's token ("" for marian)
        self._languages: list[Language] = []
        self._calls = threading.Lock()  # the tokenizer's ``src_lang`` is per call

    # -- files ---------------------------------------------------------------------------------

    def artifacts(self) -> list[ModelArtifact]:
        found = []
        if local_path(self.spec.model) is None:
            found.append(ModelArtifact(self.spec.model, _PATTERNS, _REQUIRED))
        tokenizer = self.spec.options.get("tokenizer")
        if tokenizer and local_path(str(tokenizer)) is None:
            found.append(
                ModelArtifact(str(tokenizer), _TOKENIZER_FILES, ("tokenizer_config.json",))
            )
        return found

    def _folder(self, reference: str) -> Path:
        path = local_path(reference)
        if path is not None:
            return path
        return ModelArtifact(reference, (), ()).local_dir(self.spec.models_dir)

    def _model_paths(self) -> list[Path]:
        folder = self._folder(self.spec.model)
        tokenizer = self._folder(str(self.spec.options.get("tokenizer") or self.spec.model))
        return [folder / name for name in _REQUIRED] + [tokenizer / "tokenizer_config.json"]

    # -- lifecycle -----------------------------------------------------------------------------

    def _load_model(self) -> None:
        import ctranslate2
        from transformers import AutoTokenizer

        options = self.spec.options
        tokenizer_dir = self._folder(str(options.get("tokenizer") or self.spec.model))
        self._tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
        self._family = _family(self._tokenizer, options.get("family"))
        self._tokens = self._language_tokens()
        self._languages = self._pairs()
        self._translator = ctranslate2.Translator(
            str(self._folder(self.spec.model)),
            device=self.spec.device_kind,
            device_index=self.spec.device_index or 0,
            compute_type=self.spec.compute_type,
            inter_threads=int(options.get("inter_threads", 1)),
            intra_threads=int(options.get("cpu_threads", 0)),
        )

    def _release_model(self) -> None:
        self._translator = None
        self._tokenizer = None

    def _is_loaded(self) -> bool:
        return self._translator is not None

    def _park_model(self) -> None:
        self._translator.unload_model(to_cpu=True)
        if self.spec.device != "cpu" and self._translator.model_is_loaded:
            raise RuntimeError("CTranslate2 kept the model on the device: it is in use")

    def _resume_model(self) -> None:
        if not self._translator.model_is_loaded:
            self._translator.load_model()

    # -- languages -----------------------------------------------------------------------------

    def _language_tokens(self) -> dict[str, str]:
        """The languages this model has, each with its token (module docstring)."""
        tokenizer = self._tokenizer
        wanted = self.spec.options.get("languages")
        if self._family == "marian":
            source = self.spec.options.get("source_language")
            target = self.spec.options.get("target_language")
            if not isinstance(source, str) or not isinstance(target, str):
                raise ValueError("a Marian model needs options.source_language and target_language")
            return {canonical(source): "", canonical(target): ""}
        if self._family == "nllb":
            tokens = {code: flores for code, flores in NLLB_CODES.items()}
        else:
            tokens = {code: f"__{_M2M_CODES.get(code, code)}__" for code in NAMES}
        unknown = (None, tokenizer.unk_token_id)  # (M2M-100's are not in get_vocab())
        present = {
            c: t for c, t in tokens.items() if tokenizer.convert_tokens_to_ids(t) not in unknown
        }
        if wanted:
            present = {c: t for c, t in present.items() if c in {canonical(w) for w in wanted}}
        if not present:
            raise ValueError(f"the tokenizer has none of the {self._family} language tokens")
        return present

    def _pairs(self) -> list[Language]:
        codes = list(self._tokens)
        if self._family == "marian":
            source, target = codes
            return [Language(source, NAMES.get(source, source), (target,))]
        return [
            Language(code, NAMES.get(code, code), tuple(c for c in codes if c != code))
            for code in codes
        ]

    def languages(self) -> list[Language]:
        return list(self._languages)

    # -- translating ---------------------------------------------------------------------------

    async def translate(
        self, texts: Sequence[str], *, source: str, target: str, alternatives: int = 0
    ) -> list[Translation]:
        """Translate each text line by line (empty lines kept), in a worker thread."""
        import asyncio

        self._require_loaded()
        source, target = canonical(source), canonical(target)
        served = {lang.code: lang.targets for lang in self._languages}
        if source not in served:
            raise UnsupportedLanguage(f"{source} is not supported")
        if target not in served.get(source, ()):
            known = set(served).union(*served.values())
            if target not in known:
                raise UnsupportedLanguage(f"{target} is not supported")
            raise UnsupportedLanguage(f"{target} is not available as a target from {source}")
        return await asyncio.to_thread(self._translate, list(texts), source, target, alternatives)

    def _translate(
        self, texts: list[str], source: str, target: str, alternatives: int
    ) -> list[Translation]:
        lines = [_lines(text) for text in texts]
        todo = [line for text in lines for line in text if line.strip()]
        with self._calls:
            hypotheses = self._decode(todo, source, target, alternatives) if todo else []
        done = iter(hypotheses)
        results = []
        for text in lines:
            best: list[str] = []
            others: list[list[str]] = [[] for _ in range(alternatives)]
            for line in text:
                found = next(done) if line.strip() else [line] * (alternatives + 1)
                best.append(found[0])
                for i in range(alternatives):
                    others[i].append(found[min(i + 1, len(found) - 1)])
            text_best = "".join(best)
            distinct = dict.fromkeys("".join(o) for o in others)
            distinct.pop(text_best, None)
            results.append(Translation(text_best, tuple(distinct)))
        return results

    def _decode(
        self, lines: list[str], source: str, target: str, alternatives: int
    ) -> list[list[str]]:
        """Each line's hypotheses, best first, whitespace around it as it was."""
        tokenizer, options = self._tokenizer, self.spec.options
        if self._family != "marian":
            token = self._tokens[source]  # M2M-100's tokenizer takes "de" for __de__
            tokenizer.src_lang = token.strip("_") if self._family == "m2m100" else token
        batch = [tokenizer.convert_ids_to_tokens(tokenizer.encode(line.strip())) for line in lines]
        prefix = [[self._tokens[target]]] * len(batch) if self._family != "marian" else None
        beam = max(int(options.get("beam_size", 2)), alternatives + 1)
        try:
            results = self._translator.translate_batch(
                batch,
                target_prefix=prefix,
                beam_size=beam,
                num_hypotheses=alternatives + 1,
                max_decoding_length=int(options.get("max_decoding_length", 256)),
                max_batch_size=int(options.get("max_batch_size", 16)),
            )
        except (RuntimeError, ValueError) as exc:
            raise EngineCallError(f"translation failed: {exc}", engine=self.name) from exc
        skip = 0 if prefix is None else 1
        out = []
        for line, result in zip(lines, results, strict=True):
            lead, trail = _edges(line)
            out.append(
                [
                    lead + self._detokenize(hypothesis[skip:]) + trail
                    for hypothesis in result.hypotheses
                ]
            )
        return out

    def _detokenize(self, tokens: list[str]) -> str:
        ids = self._tokenizer.convert_tokens_to_ids(tokens)
        return str(self._tokenizer.decode(ids, skip_special_tokens=True)).strip()


def _family(tokenizer: Any, configured: object) -> Family:
    if configured in ("nllb", "m2m100", "marian"):
        return configured
    name = type(tokenizer).__name__.lower()
    for family in ("nllb", "m2m100", "marian"):
        if family in name:
            return family
    raise ValueError(
        f"cannot tell the model family from its tokenizer {type(tokenizer).__name__}: set"
        " options.family to nllb, m2m100 or marian"
    )


def _lines(text: str) -> list[str]:
    """The text cut after each line break, the breaks kept, so the output has the same lines."""
    return re.split(r"(?<=\n)", text) if text else [text]


def _edges(line: str) -> tuple[str, str]:
    stripped = line.strip()
    if not stripped:
        return line, ""
    start = line.index(stripped)
    return line[:start], line[start + len(stripped) :]
