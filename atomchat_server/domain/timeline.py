"""The timeline's rules for text: reactions' emoji, and who an `@username` names."""

from __future__ import annotations

import re

import icu

from atomchat_server.domain import errors
from atomchat_server.domain.usernames import username_key

MAX_EMOJI_CODE_POINTS = 16
MAX_DISTINCT_REACTIONS = 20
_NAMED_EMOJI = re.compile(r":[a-z0-9_+-]{1,32}:")
# What an emoji's grapheme may be made of, and what it must contain at least one
# of (a digit alone is an Emoji code point, but not a picture).
_EMOJI_PARTS = icu.UnicodeSet("[[:Emoji:][:Emoji_Component:]\\u200d\\ufe0e\\ufe0f]")
_EMOJI_PARTS.freeze()
_PICTURES = icu.UnicodeSet("[[:Extended_Pictographic:][:Regional_Indicator:]\\u20e3]")
_PICTURES.freeze()
# `@name`, not inside a word or an address (`mail@host`).
_MENTION = re.compile(r"(?<![\w@.])@([\w.-]{4,32})")


def _graphemes(text: str) -> int:
    breaks = icu.BreakIterator.createCharacterInstance(icu.Locale.getRoot())
    breaks.setText(text)
    return sum(1 for _ in breaks)


def clean_emoji(emoji: str) -> str:
    """One emoji (a single grapheme cluster of at most 16 code points) or `:name:`."""
    if _NAMED_EMOJI.fullmatch(emoji):
        return emoji
    if (
        0 < len(emoji) <= MAX_EMOJI_CODE_POINTS
        and _EMOJI_PARTS.containsAll(emoji)
        and _PICTURES.containsSome(emoji)
        and _graphemes(emoji) == 1
    ):
        return emoji
    raise errors.InvalidArgument(
        "emoji must be one emoji, or :name: with 1-32 of a-z 0-9 _ + -",
        reason=errors.Reason.INVALID_EMOJI,
        field="emoji",
    )


def mentioned_keys(content: str) -> list[str]:
    """The username keys of the `@username`s in the content, each once, in order."""
    keys: list[str] = []
    for match in _MENTION.finditer(content):
        key = username_key(match.group(1).rstrip("."))
        if key not in keys:
            keys.append(key)
    return keys
