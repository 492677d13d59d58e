"""Text from users that can be stored and shown: the one check every entry point shares.

A Python str may hold an unpaired UTF-16 surrogate (JSON's "\\ud800" escape, or an undecodable byte
of a command line decoded with surrogateescape). UTF-8 cannot encode it, so SQLite, YAML and file
writes fail later with an unrelated error; callers refuse such text at their validation boundary.

    check_text(message, "message", InvalidRequestError)
"""

from __future__ import annotations


def is_text(value: str) -> bool:
    """Whether `value` can be encoded as UTF-8 (no unpaired surrogate)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def text_problem(field: str) -> str:
    """The message for a field whose text is not valid; starts with the field."""
    return f"{field}: not valid text (it holds an unpaired UTF-16 surrogate)"


def check_text(value: str, field: str, error: type[Exception] = ValueError) -> str:
    """`value` unchanged, or `error` naming `field` when it cannot be encoded as UTF-8."""
    if not is_text(value):
        raise error(text_problem(field))
    return value
