"""The REST request bodies as typed models, parsed before a route acts on anything in them.

Each model holds what we act on, under OpenAI's parameter names, strictly typed and bounded.
The names and types of everything else OpenAI accepts come from the official ``openai``
package's parameter TypedDicts, never re-typed here: a parameter OpenAI has is type-checked
against its TypedDict and then ignored; one it lacks (and we do not add) is rejected. Every
failure is a ``BadRequest`` (400, ``invalid_request_error``) naming the parameter:

    code                          when
    missing_required_parameter    a required parameter is absent
    invalid_type                  a parameter of the wrong JSON type ("hot" for a number)
    invalid_value                 out of range, not one of the allowed values, empty
    string_above_max_length       text longer than its limit
    unknown_parameter             a name neither OpenAI nor we define
    unsupported_parameter         an OpenAI parameter we do not do, given (``tools``...)
    invalid_text                  text with a NUL or a lone surrogate (no engine can speak it)
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypeVar

from openai.types.audio import (
    speech_create_params,
    transcription_create_params,
    translation_create_params,
)
from openai.types.chat import completion_create_params
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    field_validator,
)
from pydantic_core import PydanticCustomError

from orchestrator.api.errors import BadRequest

MAX_SPEECH_CHARS = 4096
MAX_CHOICES = 8  # ``n``: each choice is a whole reply, made one after another

_CODES = {
    "missing": "missing_required_parameter",
    "string_too_long": "string_above_max_length",
    "extra_forbidden": "unknown_parameter",
    "string_unicode": "invalid_text",  # a lone surrogate
}
_VALUE_ERRORS = ("literal_error", "greater_than", "less_than", "too_short", "too_long", "enum")


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)


class SpeechBody(_Body):
    """``POST /v1/audio/speech``."""

    model: str | None = None
    input: Annotated[str, Field(max_length=MAX_SPEECH_CHARS)]
    voice: str | None = None  # OpenAI's voice names select nothing in a single-speaker voice
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = "mp3"
    speed: Annotated[float, Field(ge=0.25, le=4.0)] = 1.0
    instructions: str | None = None
    stream_format: Literal["audio"] = "audio"  # OpenAI's "sse" is not served

    @field_validator("input")
    @classmethod
    def _speakable(cls, text: str) -> str:
        if not text.strip():
            raise PydanticCustomError("invalid_value", "'input' must be non-empty text")
        if "\x00" in text:
            raise PydanticCustomError("invalid_text", "'input' contains a NUL character")
        return text  # a lone surrogate is refused by ``str`` itself (``string_unicode``)


class TextPart(_Body):
    type: Literal["text"]
    text: str


class ImageUrl(_Body):
    url: Annotated[str, Field(min_length=1)]
    detail: Literal["auto", "low", "high"] = "auto"  # the engine decides its own resolution


class ImagePart(_Body):
    """An image for the vision-language role: a data URL, or an allowed host's (``images``)."""

    type: Literal["image_url"]
    image_url: ImageUrl


class OtherPart(_Body):
    """Audio and file parts are accepted and not heard: the engines read text and images."""

    type: Literal["input_audio", "file", "refusal"]


def _part_kind(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return {"text": "Text", "image_url": "Image"}.get(str(kind), "Other")


ContentPart = Annotated[
    Annotated[TextPart, Tag("Text")]
    | Annotated[ImagePart, Tag("Image")]
    | Annotated[OtherPart, Tag("Other")],
    Discriminator(_part_kind),
]


class Message(_Body):
    role: Literal["system", "user", "assistant", "developer"]
    content: str | Annotated[list[ContentPart], Field(min_length=1)]
    name: str | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return " ".join(part.text for part in self.content if isinstance(part, TextPart))

    def image_urls(self) -> list[tuple[int, str]]:
        """``(part index, url)`` of each image part, in order."""
        if isinstance(self.content, str):
            return []
        parts = enumerate(self.content)
        return [(i, p.image_url.url) for i, p in parts if isinstance(p, ImagePart)]


class StreamOptions(_Body):
    include_usage: bool = False


class ChatBody(_Body):
    """``POST /v1/chat/completions``."""

    model: str | None = None
    messages: Annotated[list[Message], Field(min_length=1)]
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    n: Annotated[int, Field(ge=1, le=MAX_CHOICES)] = 1
    stop: (
        Annotated[str, Field(min_length=1)]
        | Annotated[list[Annotated[str, Field(min_length=1)]], Field(max_length=4)]
        | None
    ) = None
    seed: int | None = None

    def options(self) -> dict[str, Any]:
        """What the LLM engine is asked to do besides the messages."""
        options: dict[str, Any] = {}
        limit = self.max_completion_tokens or self.max_tokens
        if limit is not None:
            options["max_new_tokens"] = limit
        if self.temperature is not None:
            options["temperature"] = self.temperature
        if self.top_p is not None:
            options["top_p"] = self.top_p
        if self.seed is not None:  # OpenAI's best-effort determinism for sampled replies
            options["seed"] = self.seed
        return options

    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


def _given(value: Any) -> bool:
    return value not in (None, False, 0, "", [], {})


# OpenAI parameters the chat route does not do: given (not at their "off" value), each is a 400
# naming it, never silently ignored. Why, for the message.
UNSERVED_CHAT: dict[str, tuple[str, Any]] = {
    "tools": ("tool calls are not served by the voice engines", _given),
    "tool_choice": ("tool calls are not served", lambda v: v not in (None, "none")),
    "functions": ("function calls are not served", _given),
    "function_call": ("function calls are not served", lambda v: v not in (None, "none")),
    "logprobs": ("log probabilities are not reported", _given),
    "top_logprobs": ("log probabilities are not reported", lambda v: v is not None),
    "logit_bias": ("logit bias is not applied", _given),
    "response_format": (
        "only plain text replies are made",
        lambda v: isinstance(v, dict) and v.get("type") not in (None, "text"),
    ),
    "audio": ("audio replies come from /v1/audio/speech or /v1/realtime", _given),
    "modalities": ("only text replies are made", lambda v: _given(v) and list(v) != ["text"]),
    "prediction": ("predicted outputs are not used", _given),
    "web_search_options": ("there is no web search", lambda v: v is not None),
    "presence_penalty": ("penalties are not applied", _given),
    "frequency_penalty": ("penalties are not applied", _given),
}


def refuse_unserved(body: Mapping[str, Any], unserved: Mapping[str, tuple[str, Any]]) -> None:
    """A ``BadRequest`` for the first parameter ``body`` gives that the route does not do."""
    for name, (why, given) in unserved.items():
        if name in body and given(body[name]):
            raise BadRequest(
                f"'{name}' is not supported by this server: {why}",
                code="unsupported_parameter",
                param=name,
            )


class TranscriptionForm(_Body):
    """The text fields of ``POST /v1/audio/transcriptions`` (the file travels beside them).
    Form values are text, so numbers are parsed from it."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=False)

    model: str | None = None
    language: str | None = None
    prompt: str | None = None
    response_format: Literal["json", "text", "verbose_json"] = "json"
    temperature: Annotated[float, Field(ge=0, le=1)] | None = None


class TranslationForm(_Body):
    """The text fields of ``POST /v1/audio/translations`` (speech in any language -> English
    text); OpenAI's form has no ``language``."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=False)

    model: str | None = None
    prompt: str | None = None
    response_format: Literal["json", "text", "verbose_json"] = "json"
    temperature: Annotated[float, Field(ge=0, le=1)] | None = None


_M = TypeVar("_M", bound=_Body)

OPENAI_PARAMS: dict[type[_Body], Any] = {
    SpeechBody: speech_create_params.SpeechCreateParams,
    ChatBody: completion_create_params.CompletionCreateParamsBase,
    TranscriptionForm: transcription_create_params.TranscriptionCreateParamsBase,
    TranslationForm: translation_create_params.TranslationCreateParams,
}


@functools.cache
def _openai_adapter(model: type[_Body]) -> TypeAdapter[Any]:
    return TypeAdapter(OPENAI_PARAMS[model])


@functools.cache
def _openai_names(model: type[_Body]) -> frozenset[str]:
    return frozenset(OPENAI_PARAMS[model].__annotations__)


def parse(model: type[_M], body: Mapping[str, Any]) -> _M:
    """``body`` as ``model``, or the ``BadRequest`` for its first fault."""
    try:
        parsed = model.model_validate(body)
    except ValidationError as exc:
        raise _bad_request(exc) from None
    known = model.model_fields.keys() | _openai_names(model)
    unknown = sorted(name for name in body if name.removesuffix("[]") not in known)
    if unknown:
        raise BadRequest(
            f"unrecognized request argument supplied: {unknown[0]}",
            code="unknown_parameter",
            param=unknown[0],
        )
    if model in (TranscriptionForm, TranslationForm):
        return parsed  # form values are text: OpenAI's JSON types do not apply to them
    try:  # the parameters we ignore still have OpenAI's types
        _openai_adapter(model).validate_python(dict(body))
    except ValidationError as exc:
        errors = [e for e in exc.errors() if e["type"] != "missing"]
        if errors:
            raise _bad_request(exc, errors[0]) from None
    return parsed


def _bad_request(exc: ValidationError, error: Any = None) -> BadRequest:
    # Of a union's alternatives, the one that got furthest says the most (a content part's
    # ``text``, rather than "content is not a string").
    first = error or max(exc.errors(), key=lambda e: len(e["loc"]))
    kind = first["type"]
    param = param_path(first["loc"])
    if kind in _CODES:
        code = _CODES[kind]
    elif kind.endswith("_type") or kind.endswith("_parsing"):
        code = "invalid_type"
    elif kind.startswith(_VALUE_ERRORS) or kind.endswith("_tag_invalid"):
        code = "invalid_value"
    else:
        code = kind if kind.isidentifier() and kind.islower() else "invalid_value"
    if kind == "invalid_text":
        message = first["msg"]
    elif kind == "string_unicode":
        message = f"'{param}' is not Unicode text (a lone surrogate?)"
    else:
        message = f"invalid '{param}': {first['msg']}"
    return BadRequest(message, code=code, param=param or None)


def param_path(loc: tuple[int | str, ...]) -> str:
    """``('messages', 0, 'content', 'list[...]', 0, 'Text', 'text')`` as
    ``messages[0].content[0].text``: union members and tags are left out."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif _is_field(part):
            path += f".{part}" if path else part
    return path


def _is_field(part: str) -> bool:
    return part.isidentifier() and part.islower() and part not in _TYPE_NAMES


_TYPE_NAMES = frozenset({"str", "int", "float", "bool", "list", "dict", "none", "literal"})
