"""The translation role's contract: text in one language, text in another.

Kept beside ``services.base`` (which states every other role) because that module is full; it is
the same contract layer: everything above the fleet reaches a translation engine through
``TextTranslator``, never an adapter.

Languages are named by LibreTranslate's codes (ISO 639-1, ``zh-Hans``/``zh-Hant``, ``pt-BR``),
the convention translation clients speak; an adapter maps them to its model's own tokens
(NLLB's ``deu_Latn``, M2M-100's ``__de__``). ``LANGUAGES`` holds the codes this project knows,
their English names and their FLORES-200 codes (NLLB's); M2M-100's tokens are the ISO codes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from services.base import Engine
from services.errors import InvalidInput


class UnsupportedLanguage(InvalidInput):
    """A language, or a pair, the translation engine does not serve."""

    code = "unsupported_language"


@dataclass(frozen=True)
class Language:
    """A source language an engine translates from, and the targets it reaches from it."""

    code: str
    name: str
    targets: tuple[str, ...]


@dataclass(frozen=True)
class Translation:
    """One text translated: the best hypothesis and, when asked, the next best ones."""

    text: str
    alternatives: tuple[str, ...] = ()


@runtime_checkable
class TextTranslator(Engine, Protocol):
    """The translation role. ``translate`` raises ``InvalidInput`` for a language or pair the
    model does not serve (``languages()`` says which it does)."""

    def languages(self) -> list[Language]:
        """Every source language and its targets; empty until the engine was loaded once."""
        ...

    async def translate(
        self, texts: Sequence[str], *, source: str, target: str, alternatives: int = 0
    ) -> list[Translation]:
        """Translate each text (line breaks kept), in a worker thread; ``alternatives`` more
        hypotheses per text where the model's beam gives distinct ones."""
        ...


# (LibreTranslate code, English name, FLORES-200 code as NLLB-200 writes it)
LANGUAGES: tuple[tuple[str, str, str], ...] = (
    ("af", "Afrikaans", "afr_Latn"), ("am", "Amharic", "amh_Ethi"),
    ("ar", "Arabic", "arb_Arab"), ("az", "Azerbaijani", "azj_Latn"),
    ("be", "Belarusian", "bel_Cyrl"), ("bg", "Bulgarian", "bul_Cyrl"),
    ("bn", "Bengali", "ben_Beng"), ("bs", "Bosnian", "bos_Latn"),
    ("ca", "Catalan", "cat_Latn"), ("cs", "Czech", "ces_Latn"),
    ("cy", "Welsh", "cym_Latn"), ("da", "Danish", "dan_Latn"),
    ("de", "German", "deu_Latn"), ("el", "Greek", "ell_Grek"),
    ("en", "English", "eng_Latn"), ("eo", "Esperanto", "epo_Latn"),
    ("es", "Spanish", "spa_Latn"), ("et", "Estonian", "est_Latn"),
    ("eu", "Basque", "eus_Latn"), ("fa", "Persian", "pes_Arab"),
    ("fi", "Finnish", "fin_Latn"), ("fr", "French", "fra_Latn"),
    ("ga", "Irish", "gle_Latn"), ("gl", "Galician", "glg_Latn"),
    ("gu", "Gujarati", "guj_Gujr"), ("ha", "Hausa", "hau_Latn"),
    ("he", "Hebrew", "heb_Hebr"), ("hi", "Hindi", "hin_Deva"),
    ("hr", "Croatian", "hrv_Latn"), ("hu", "Hungarian", "hun_Latn"),
    ("hy", "Armenian", "hye_Armn"), ("id", "Indonesian", "ind_Latn"),
    ("is", "Icelandic", "isl_Latn"), ("it", "Italian", "ita_Latn"),
    ("ja", "Japanese", "jpn_Jpan"), ("ka", "Georgian", "kat_Geor"),
    ("kk", "Kazakh", "kaz_Cyrl"), ("km", "Khmer", "khm_Khmr"),
    ("kn", "Kannada", "kan_Knda"), ("ko", "Korean", "kor_Hang"),
    ("lt", "Lithuanian", "lit_Latn"), ("lv", "Latvian", "lvs_Latn"),
    ("mk", "Macedonian", "mkd_Cyrl"), ("ml", "Malayalam", "mal_Mlym"),
    ("mn", "Mongolian", "khk_Cyrl"), ("mr", "Marathi", "mar_Deva"),
    ("ms", "Malay", "zsm_Latn"), ("my", "Burmese", "mya_Mymr"),
    ("ne", "Nepali", "npi_Deva"), ("nl", "Dutch", "nld_Latn"),
    ("nb", "Norwegian Bokmål", "nob_Latn"), ("pa", "Punjabi", "pan_Guru"),
    ("pl", "Polish", "pol_Latn"), ("ps", "Pashto", "pbt_Arab"),
    ("pt", "Portuguese", "por_Latn"), ("ro", "Romanian", "ron_Latn"),
    ("ru", "Russian", "rus_Cyrl"), ("si", "Sinhala", "sin_Sinh"),
    ("sk", "Slovak", "slk_Latn"), ("sl", "Slovenian", "slv_Latn"),
    ("so", "Somali", "som_Latn"), ("sq", "Albanian", "als_Latn"),
    ("sr", "Serbian", "srp_Cyrl"), ("sv", "Swedish", "swe_Latn"),
    ("sw", "Swahili", "swh_Latn"), ("ta", "Tamil", "tam_Taml"),
    ("te", "Telugu", "tel_Telu"), ("th", "Thai", "tha_Thai"),
    ("tl", "Tagalog", "tgl_Latn"), ("tr", "Turkish", "tur_Latn"),
    ("uk", "Ukrainian", "ukr_Cyrl"), ("ur", "Urdu", "urd_Arab"),
    ("uz", "Uzbek", "uzn_Latn"), ("vi", "Vietnamese", "vie_Latn"),
    ("yo", "Yoruba", "yor_Latn"), ("zh-Hans", "Chinese", "zho_Hans"),
    ("zh-Hant", "Chinese (traditional)", "zho_Hant"), ("zu", "Zulu", "zul_Latn"),
)  # fmt: skip

NAMES: dict[str, str] = {code: name for code, name, _ in LANGUAGES}
NLLB_CODES: dict[str, str] = {code: flores for code, _, flores in LANGUAGES}
# LibreTranslate's own aliases (``libretranslate/language.py``): old codes clients still send
ALIASES: dict[str, str] = {"zh": "zh-Hans", "zt": "zh-Hant", "pb": "pt-BR"}


def known_language(code: str, param: str) -> str:
    """``code`` as ``LANGUAGES`` writes it; ``InvalidInput`` naming ``param`` when no
    translation model we speak for knows it (a typo found when it is set, not at the first
    reply)."""
    found = canonical(code)
    if found not in NAMES:
        error = UnsupportedLanguage(
            f"{param} {code!r} is not a language code (LibreTranslate's: de, fr, zh-Hans...)"
        )
        error.param = param
        raise error
    return found


def serves_pair(languages: Sequence[Language], source: str, target: str) -> bool:
    """Whether an engine's ``languages()`` reach ``target`` from ``source``; True while it
    has not said (it was never loaded)."""
    if not languages:
        return True
    return any(lang.code == source and target in lang.targets for lang in languages)


def canonical(code: str) -> str:
    """A client's code as ``LANGUAGES`` writes it (``ZH`` -> ``zh-Hans``, ``DE`` -> ``de``)."""
    lowered = code.strip().lower()
    lowered = ALIASES.get(lowered, lowered).lower()
    return next((known for known in NAMES if known.lower() == lowered), lowered)
