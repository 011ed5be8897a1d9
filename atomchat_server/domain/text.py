"""What text shows: names and messages must carry something a reader can see,
and names no control or format characters (bidi overrides, zero-width)."""

from __future__ import annotations

import unicodedata

import icu

_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf"})
# Whitespace, controls, format characters and the default-ignorable code
# points (U+3164 HANGUL FILLER among them), and the blank Braille pattern.
_BLANK = icu.UnicodeSet("[[:White_Space:][:Cc:][:Cf:][:Default_Ignorable_Code_Point:][\\u2800]]")
_BLANK.freeze()


def has_control_or_format(text: str) -> bool:
    """Control (Cc: C0, C1, DEL) or format (Cf: bidi overrides, zero-width) characters."""
    return any(unicodedata.category(character) in _INVISIBLE_CATEGORIES for character in text)


def has_visible(text: str) -> bool:
    """Something other than blanks and invisible characters."""
    return not _BLANK.containsAll(text)
