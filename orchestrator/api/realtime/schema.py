"""Client events checked against OpenAI's own models, before anything reads them.

The official ``openai`` package ships every Realtime client event as a pydantic model, for the
beta protocol (``openai.types.beta.realtime``) and for GA (``openai.types.realtime``). We do
not type OpenAI's schema again: ``validate`` runs the event through the package's union of
client events (made a discriminated union on ``type``, so one member answers), in the dialect
the client speaks: a ``session.update`` whose ``session`` has a ``type`` is GA, any other event
is read in the dialect of the connection's last ``session.update``. ``events`` then maps the
validated model into its frozen class.

Validation is strict, as JSON is typed: ``"500"`` is no integer and ``"0.5"`` no number (an
integer is a number). What breaks the models is refused with OpenAI's codes, the field's path
as ``param``:

    invalid_type                 a string or a list where a number or an object belongs
    invalid_value                a value outside the allowed ones (a wrong ``type`` tag, say)
    missing_required_parameter   a required field is absent
    unknown_parameter            a field OpenAI's model does not have (OpenAI refuses those too)

Our additions to OpenAI's events are declared in ``EXTENSIONS``, the one place that lists them.
They are taken out of the event (and checked) before OpenAI's model sees it:

    event            field                   values                what it does
    session.update   session.backend         "cascade" | "duplex"  which back-end serves it
    session.update   session.reply_language  a language code, ""   replies spoken in it,
                                                                   translated ("": off)
"""

from __future__ import annotations

import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, cast

import openai.types.beta.realtime as beta
import openai.types.realtime as ga
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from services.errors import InvalidInput

Backend = Literal["cascade", "duplex"]
BACKENDS: tuple[Backend, ...] = typing.get_args(Backend)

# LibreTranslate's language codes ("de", "zh-Hans", "pt-BR"), or "" for none
LANGUAGE_CODE = re.compile(r"(?:[a-z]{2,3}(?:-[A-Za-z]{2,4})?)?")

# (event type, path inside the event) -> the values allowed (or a pattern the whole string
# matches); see the module docstring
EXTENSIONS: dict[tuple[str, tuple[str, ...]], tuple[str, ...] | re.Pattern[str]] = {
    ("session.update", ("session", "backend")): BACKENDS,
    ("session.update", ("session", "reply_language")): LANGUAGE_CODE,
}


class InvalidEvent(InvalidInput):
    """A client event that breaks OpenAI's schema or our bounds: ``code`` says how (the codes
    in the module docstring, or a bound's own), ``param`` names the field."""

    code = "invalid_value"

    def __init__(self, message: str, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.param = param


@dataclass(frozen=True)
class Extensions:
    """Our additions found in one event (None: not given)."""

    backend: Backend | None = None
    reply_language: str | None = None


def _discriminated(union: Any) -> TypeAdapter[BaseModel]:
    """The package's ``RealtimeClientEvent`` as a pydantic discriminated union on ``type`` (the
    package marks the discriminator for its own parser only, so pydantic would try every
    member and report the errors of all of them)."""
    members = typing.get_args(typing.get_args(union)[0])
    annotated = Annotated[Union[members], Field(discriminator="type")]  # type: ignore[valid-type]  # noqa: UP007
    return cast(TypeAdapter[BaseModel], TypeAdapter(annotated))


BETA = _discriminated(beta.RealtimeClientEvent)
GA = _discriminated(ga.RealtimeClientEvent)


def is_ga(data: Mapping[str, Any], *, connection_ga: bool) -> bool:
    """Whether to read this event with the GA models: a ``session.update`` says by its
    ``session.type``; an item with an ``input_image`` part is GA's (beta has no images)."""
    session = data.get("session")
    if data.get("type") == "session.update" and isinstance(session, Mapping):
        return "type" in session
    if data.get("type") == "conversation.item.create" and _has_image_part(data.get("item")):
        return True
    return connection_ga


def _has_image_part(item: Any) -> bool:
    content = item.get("content") if isinstance(item, Mapping) else None
    parts = content if isinstance(content, list) else []
    return any(isinstance(p, Mapping) and p.get("type") == "input_image" for p in parts)


def validate(data: Mapping[str, Any], *, ga: bool) -> tuple[BaseModel, Extensions]:
    """The event as the ``openai`` package's model of it, and our extensions it carried;
    ``InvalidEvent`` naming the first field at fault."""
    stripped, extensions = _strip_extensions(data)
    try:
        model = (GA if ga else BETA).validate_python(stripped, strict=True)
    except ValidationError as exc:
        raise _translate(exc, stripped) from None
    unknown = _unknown_parameter(model, "")
    if unknown is not None:
        raise InvalidEvent(f"Unknown parameter: '{unknown}'.", "unknown_parameter", unknown)
    return model, extensions


def _strip_extensions(data: Mapping[str, Any]) -> tuple[dict[str, Any], Extensions]:
    stripped = dict(data)
    found: dict[str, Any] = {}
    for (kind, path), allowed in EXTENSIONS.items():
        if stripped.get("type") != kind:
            continue
        *parents, name = path
        holder: dict[str, Any] | None = stripped
        for key in parents:  # copied level by level on the way down: the caller's data is kept
            if holder is None or not isinstance(holder.get(key), Mapping):
                holder = None
                break
            holder[key] = dict(holder[key])
            holder = holder[key]
        if holder is None or name not in holder:
            continue
        value, param = holder.pop(name), ".".join(path)
        if isinstance(allowed, re.Pattern):
            if not isinstance(value, str) or not allowed.fullmatch(value):
                raise InvalidEvent(
                    f"Invalid value for '{param}': a language code like 'de' or 'zh-Hans',"
                    " or '' for none.",
                    "invalid_value",
                    param,
                )
        elif value not in allowed:
            choices = ", ".join(repr(a) for a in allowed)
            raise InvalidEvent(
                f"Invalid value for '{param}': must be one of {choices}.", "invalid_value", param
            )
        found[name] = value
    return stripped, Extensions(**found)


def _translate(exc: ValidationError, data: Any) -> InvalidEvent:
    """The error a client is told: the deepest of pydantic's (a union reports one error per
    member; the member the client meant is the one that got furthest), in OpenAI's words."""
    errors = [(_param(e["loc"], data), e) for e in exc.errors()]
    # a member refused only for its ``type`` tag is not the one the client meant
    meant = [
        (p, e) for p, e in errors if not (e["type"] == "literal_error" and p.endswith("type"))
    ] or errors
    param, error = max(meant, key=lambda pe: pe[0].count(".") + pe[0].count("["))
    kind = error["type"]
    if kind == "union_tag_invalid" and not param:
        return InvalidEvent(f"Invalid value for 'type': {error['msg']}.", "invalid_value", "type")
    if kind == "missing":
        return InvalidEvent(
            f"Missing required parameter: '{param}'.", "missing_required_parameter", param
        )
    if kind.endswith(("_type", "_parsing")) or kind == "int_from_float":
        return InvalidEvent(f"Invalid type for '{param}': {error['msg']}.", "invalid_type", param)
    return InvalidEvent(f"Invalid value for '{param}': {error['msg']}.", "invalid_value", param)


def _param(loc: tuple[int | str, ...], data: Any) -> str:
    """A pydantic location as the field's path in the client's JSON (``item.content[0].text``):
    the parts that are no key of the data (an event's tag, a union member's name) are left out,
    but for a missing field, the last part."""
    path = ""
    for i, part in enumerate(loc):
        key = isinstance(data, Mapping) and isinstance(part, str) and part in data
        index = isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data)
        if key or index:
            data = data[part]
        elif not (i == len(loc) - 1 and isinstance(part, str) and part.isidentifier()):
            continue
        path = f"{path}[{part}]" if isinstance(part, int) else f"{path}.{part}".lstrip(".")
    return path


def _unknown_parameter(value: Any, path: str) -> str | None:
    """The path of the first field no model declares (the package's models keep extras)."""
    if isinstance(value, BaseModel):
        for key in value.model_extra or {}:
            return f"{path}.{key}" if path else key
        for name in value.model_fields_set:
            found = _unknown_parameter(getattr(value, name), f"{path}.{name}" if path else name)
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _unknown_parameter(item, f"{path}[{i}]")
            if found is not None:
                return found
    return None
