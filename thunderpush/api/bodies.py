"""Request bodies: the API takes strict JSON in UTF-8, and nothing else."""

from __future__ import annotations

import json
from typing import Any

from thunderpush.api.answers import INVALID_JSON

_BOM = "\ufeff"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# One decoder for every body: ``json.loads`` with an option builds one per call.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def decoded(body: bytes) -> tuple[str, Any]:
    """The body as text and the value it holds, once it is known to be strict JSON in UTF-8.

    Strict means no NaN/Infinity, no other encoding, no trailing garbage; a
    leading BOM and surrounding whitespace are allowed (and kept in the text).
    """
    try:
        text = body.decode("utf-8")
        value = _DECODER.decode(text.removeprefix(_BOM))
    except (ValueError, RecursionError):
        raise INVALID_JSON from None
    return text, value
