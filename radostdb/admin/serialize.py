"""JSON of the ``radostdb`` reports (ls, info, check), made from their dataclasses.

:func:`to_json` turns a dataclass into plain JSON values field by field, in
field order, then adds the properties the class names in ``json_extra``.
A field's ``metadata`` can change that (KEY, SKIP, named(), converted()):
- ``json_name``: the JSON key, when it differs from the field's name;
- ``json_key``: bytes that are a record key (or a list of them): shown as
  tdbdump escapes them, plus the same in hex under ``NAME_hex``;
- ``json_convert``: a function applied to the value first;
- ``json_skip``: left out.
Other bytes become hex; lists, tuples and dicts are converted item by item.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from ..tdbdump import escape

KEY: dict[str, Any] = {"json_key": True}  # metadata of a record key (or a list of keys)
SKIP: dict[str, Any] = {"json_skip": True}  # metadata of a field left out


def named(name: str) -> dict[str, Any]:
    """Metadata of a field shown under the JSON key ``name``."""
    return {"json_name": name}


def converted(convert: Callable[[Any], Any]) -> dict[str, Any]:
    """Metadata of a field shown as ``convert(value)``."""
    return {"json_convert": convert}


def _text(key: bytes) -> str:
    return escape(key).decode("ascii")


def to_json(obj: Any) -> Any:
    """Plain JSON values (dict, list, str, int, float, bool, None) for ``obj``."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(obj):
            meta = f.metadata
            if meta.get("json_skip"):
                continue
            name = meta.get("json_name", f.name)
            value = getattr(obj, f.name)
            if "json_convert" in meta:
                value = meta["json_convert"](value)
            if meta.get("json_key"):
                if isinstance(value, list | tuple):
                    out[name] = [_text(k) for k in value]
                    out[name + "_hex"] = [k.hex() for k in value]
                else:
                    out[name] = None if value is None else _text(value)
                    out[name + "_hex"] = None if value is None else value.hex()
                continue
            out[name] = to_json(value)
        for prop in getattr(obj, "json_extra", ()):
            out[prop] = to_json(getattr(obj, prop))
        return out
    if isinstance(obj, bytes | bytearray):
        return bytes(obj).hex()
    if isinstance(obj, dict):
        return {str(k): to_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_json(v) for v in obj]
    return obj
