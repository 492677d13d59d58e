"""YAML and JSON from users (surveys, interview guides): size-capped, without YAML aliases.

A few hundred bytes of YAML with anchors and aliases (`a: &a [x, x]`, `b: &b [*a, *a]`, ...) expand
to gigabytes once loaded ("billion laughs"). User files never need aliases, so the loader here
refuses any anchor or alias before it builds a single object, and refuses text over its byte limit
before parsing. Errors are ValueErrors whose message starts with the field.

    data = load_user_data(text, "survey", max_bytes=settings.survey_max_bytes, setting="SURVEY_MAX_BYTES")
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from yaml.events import AliasEvent
from yaml.nodes import Node

# Deeper nesting than this is refused (real surveys and guides nest 4-5 levels).
MAX_DEPTH = 64


class UserDataError(ValueError):
    """User YAML/JSON that cannot be loaded; the message starts with the field."""


class DataTooLargeError(UserDataError):
    """User text or a file over its byte limit; the message names the field and the setting."""


class NoAliasSafeLoader(yaml.SafeLoader):
    """SafeLoader that refuses anchors (`&a`) and aliases (`*a`): no expansion, no shared objects."""

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:  # type: ignore[override]
        event = self.peek_event()
        if isinstance(event, AliasEvent) or getattr(event, "anchor", None) is not None:
            mark = event.start_mark
            raise yaml.constructor.ConstructorError(
                None, None, "anchors and aliases (& and *) are not allowed here", mark
            )
        if len(self._depth_stack) >= MAX_DEPTH:
            raise yaml.constructor.ConstructorError(
                None, None, f"nested more than {MAX_DEPTH} levels deep", event.start_mark
            )
        self._depth_stack.append(None)
        try:
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self._depth_stack.pop()

    def __init__(self, stream: Any):
        super().__init__(stream)
        self._depth_stack: list[None] = []


# Timestamps stay strings: `2001-13-45` would raise the constructor's bare ValueError, and no user
# file needs a datetime (plain or `!!timestamp`).
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
NoAliasSafeLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != _TIMESTAMP]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
NoAliasSafeLoader.add_constructor(_TIMESTAMP, yaml.SafeLoader.construct_yaml_str)  # type: ignore[type-var]


def check_size(text: str | bytes, field: str, max_bytes: int, setting: str) -> None:
    """UserDataError naming `field` and `setting` when `text` is over `max_bytes` (UTF-8) bytes."""
    size = len(text) if isinstance(text, bytes) else len(text.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise DataTooLargeError(f"{field}: is {size} bytes; the maximum is {max_bytes} ({setting})")


def read_text_file(path: Path, max_bytes: int, field: str, setting: str) -> str:
    """A UTF-8 file's text; refused before reading (UserDataError naming `field` and `setting`) when
    it is over `max_bytes`."""
    size = path.stat().st_size
    if size > max_bytes:
        raise DataTooLargeError(
            f"{field}: {path.name} is {size} bytes; the maximum is {max_bytes} ({setting})"
        )
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserDataError(f"{field}: {path.name} is not UTF-8 text ({exc.reason})") from None


def load_yaml(text: str, field: str) -> Any:
    """YAML (JSON included) without anchors or aliases; UserDataError naming `field` otherwise."""
    try:
        return yaml.load(text, Loader=NoAliasSafeLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise UserDataError(f"{field}: not valid YAML: {exc}") from None
    except (ValueError, OverflowError) as exc:  # a constructor's own error (a bad !!int, !!float ...)
        raise UserDataError(f"{field}: not valid YAML: {exc}") from None
    except RecursionError:
        raise UserDataError(f"{field}: nested more than {MAX_DEPTH} levels deep") from None


def load_json(text: str, field: str) -> Any:
    """JSON; UserDataError naming `field` for invalid or too deeply nested text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserDataError(f"{field}: not valid JSON: {exc}") from None
    except RecursionError:
        raise UserDataError(f"{field}: nested too deeply") from None


def load_user_data(text: str, field: str, *, max_bytes: int, setting: str, as_json: bool = False) -> Any:
    """Size-checked YAML (or JSON with `as_json`) from a user."""
    check_size(text, field, max_bytes, setting)
    return load_json(text, field) if as_json else load_yaml(text, field)
