"""Usernames: what one may be, and when two are the same name to a reader's eye.

A username is 4-32 letters, digits, `_`, `.` or `-`, of one script (ICU's
single-script restriction: Latin, Cyrillic, Japanese, ... but not Latin and
Cyrillic mixed, and no mixed digit systems), with no control or format
characters (bidi overrides, zero-width joiners).

Two usernames are the same name when their keys are equal: NFKC, then case
folding, then the Unicode TR39 confusable skeleton (ICU's spoof checker). So
`moderator`, `Moderator`, `ｍｏｄｅｒａｔｏｒ` (fullwidth), `𝗆𝗈𝖽𝖾𝗋𝖺𝗍𝗈𝗋`
(mathematical sans-serif) and `mоderator` (a Cyrillic о) share one key, and
only the first to register gets it. The key is stored beside the username
with a unique constraint.
"""

from __future__ import annotations

import re
import unicodedata

import icu

from atomchat_server.domain import errors, text

USERNAME_MAX = 32
USERNAME_PATTERN = re.compile(r"[\w.-]{4,32}")

_skeletons = icu.SpoofChecker()
_restriction = icu.SpoofChecker()
_restriction.setChecks(
    icu.USpoofChecks.RESTRICTION_LEVEL | icu.USpoofChecks.MIXED_NUMBERS | icu.USpoofChecks.INVISIBLE
)
_restriction.setRestrictionLevel(icu.URestrictionLevel.SINGLE_SCRIPT_RESTRICTIVE)


def username_key(username: str) -> str:
    """The name as a reader's eye takes it; equal keys are confusable names."""
    folded = unicodedata.normalize("NFKC", username).casefold()
    return str(_skeletons.getSkeleton(0, folded))


def validate_username(username: str) -> None:
    if text.has_control_or_format(username) or not USERNAME_PATTERN.fullmatch(username):
        raise errors.InvalidArgument(
            "Username must be 4-32 characters: letters, digits, '_', '.' or '-'",
            reason=errors.Reason.INVALID_USERNAME,
            field="username",
        )
    if _restriction.check(unicodedata.normalize("NFKC", username)):
        raise errors.InvalidArgument(
            "Username must be written in one script (no mixed alphabets or digit systems)",
            reason=errors.Reason.INVALID_USERNAME,
            field="username",
        )
