"""The API's JSON parser: DRF's, with the nesting depth bounded.

Python's json module recurses once per nested list or object, so a few kilobytes of `[[[[…]]]]`
raise RecursionError (a 500) in the parser, or later in whatever walks the data. No request of
this API nests deeper than a few levels: anything past MAX_JSON_DEPTH is refused as a parse error
(400, the app's error shape) before a serializer sees it.
"""

from __future__ import annotations

import codecs
import json
from typing import Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser
from rest_framework.utils.json import strict_constant

MAX_JSON_DEPTH = 32


def json_too_deep(data: Any, *, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether `data` nests lists/objects more than `limit` levels deep. Iterative: never recurses itself."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def load_json(text: str | bytes, *, limit: int = MAX_JSON_DEPTH, strict: bool = True) -> Any:
    """json.loads with the depth bound; a ValueError (json's own, or too deep) for anything refused."""
    constant = strict_constant if strict else None
    brackets = text.count("[") + text.count("{") if isinstance(text, str) else text.count(b"[") + text.count(b"{")
    if brackets <= limit:  # cheap first: fewer brackets than the limit cannot nest past it
        return json.loads(text, parse_constant=constant)
    too_deep = ValueError(f"nested more than {limit} levels deep")
    try:
        data = json.loads(text, parse_constant=constant)
    except RecursionError:  # json recurses per level: a deep enough body fails inside it
        raise too_deep from None
    if json_too_deep(data, limit=limit):
        raise too_deep
    return data


class BoundedJSONParser(JSONParser):
    """JSONParser that refuses JSON nested past MAX_JSON_DEPTH with a 400 instead of a RecursionError."""

    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = codecs.getreader(encoding)(stream).read()
            return load_json(text, strict=self.strict)
        except ValueError as exc:  # UnicodeDecodeError and json.JSONDecodeError are ValueErrors
            raise ParseError(f"JSON parse error - {exc}") from None
