"""The text format of Samba's ``tdbdump`` and ``tdbrestore``.

Format (lib/tdb/tools/tdbdump.c), per record::

    {
    key(N) = "…"
    data(M) = "…"
    }

N and M are the raw byte lengths. Between the quotes a byte that is
printable ASCII (0x20-0x7E) other than ``"`` and ``\\`` stands for itself;
every other byte is written ``\\XX``, two uppercase hex digits. ``tdbdump -k
KEY`` prints only the escaped value, without a newline.

Reading is as liberal as ``tdbrestore``: hex digits in either case, and any
byte but a newline or a backslash taken as itself; the lengths must match
the decoded bytes. Errors name the line.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO

from .errors import RadostdbError

__all__ = [
    "DumpFormatError",
    "escape",
    "format_record",
    "parse",
    "quoted",
    "read_records",
    "unescape",
    "write",
]

# Bytes that tdbdump writes as themselves: printable ASCII but '"' and '\';
# every other byte is written \XX.
_PLAIN = bytes(b for b in range(0x20, 0x7F) if b not in b'"\\')
_NEEDS_ESCAPE = re.compile(rb"[^ !#-\[\]-~]+")
_HEX = b"0123456789ABCDEF"
_FIRST = bytes(b if b in _PLAIN else ord("\\") for b in range(256))
_HIGH = bytes(0 if b in _PLAIN else _HEX[b >> 4] for b in range(256))
_LOW = bytes(0 if b in _PLAIN else _HEX[b & 15] for b in range(256))
_KEY_LINE = re.compile(rb'key\((\d+)\) = "(.*)"\n\Z', re.DOTALL)
_DATA_LINE = re.compile(rb'data\((\d+)\) = "(.*)"\n\Z', re.DOTALL)
_BAD_ESCAPE = re.compile(rb"\\(?![0-9A-Fa-f]{2})(.{0,2})", re.DOTALL)
# CPython's decoder of Python string escapes (undocumented, present since 2.x).
_escape_decode = codecs.escape_decode  # type: ignore[attr-defined]
_PREVIEW = 40


class DumpFormatError(RadostdbError, ValueError):
    """Input that is not in tdbdump's format; ``line`` is 1-based."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


def _escape_run(m: re.Match[bytes]) -> bytes:
    return ("\\" + m.group().hex("\\").upper()).encode("ascii")


def escape(data: bytes) -> bytes:
    """``data`` as tdbdump prints it between the quotes."""
    escapes = len(data.translate(None, _PLAIN))  # the bytes left are those to escape
    if not escapes:
        return data
    if escapes * 8 < len(data):  # a few runs: substitute them
        return _NEEDS_ESCAPE.sub(_escape_run, data)
    # Mostly binary: three bytes per input byte (the byte itself or a backslash,
    # then two hex digits or NULs), interleaved, then the NULs dropped. All in C.
    out = bytearray(3 * len(data))
    out[0::3] = data.translate(_FIRST)
    out[1::3] = data.translate(_HIGH)
    out[2::3] = data.translate(_LOW)
    return bytes(out.translate(None, b"\0"))


def quoted(data: bytes) -> str:
    """``data`` escaped as tdbdump escapes it, in double quotes: how messages show a key."""
    return '"' + escape(data).decode("ascii") + '"'


def format_record(key: bytes, data: bytes) -> bytes:
    """One record exactly as tdbdump prints it, final newline included."""
    return b'{\nkey(%d) = "%s"\ndata(%d) = "%s"\n}\n' % (
        len(key),
        escape(key),
        len(data),
        escape(data),
    )


def write(records: Iterable[tuple[bytes, bytes]], out: BinaryIO, chunk: int = 1 << 16) -> int:
    """Write records in tdbdump's format to ``out`` in chunks; return the count."""
    n = 0
    size = 0
    buf: list[bytes] = []
    for key, data in records:
        rec = format_record(key, data)
        buf.append(rec)
        size += len(rec)
        n += 1
        if size >= chunk:
            out.write(b"".join(buf))
            buf.clear()
            size = 0
    if buf:
        out.write(b"".join(buf))
    return n


def unescape(text: bytes) -> bytes:
    """The bytes that tdbdump's escaped ``text`` stands for; ValueError if malformed."""
    if b"\\" not in text:
        return text
    try:
        # every backslash starts a \XX escape: as Python's \xXX, decoded in C
        return _escape_decode(text.replace(b"\\", b"\\x"))[0]
    except ValueError:
        bad = _BAD_ESCAPE.search(text)
        shown = bad.group(1).decode("ascii", "replace") if bad else ""
        raise ValueError(f"bad escape \\{shown}") from None


def _preview(line: bytes) -> str:
    text = line.rstrip(b"\n")
    shown = escape(text[:_PREVIEW]).decode("ascii")
    return repr(shown + ("…" if len(text) > _PREVIEW else ""))


def _field(line: bytes, lineno: int, pattern: re.Pattern[bytes], what: str) -> bytes:
    m = pattern.match(line)
    if m is None:
        raise DumpFormatError(lineno, f'expected {what}(LENGTH) = "…", found {_preview(line)}')
    try:
        value = unescape(m.group(2))
    except ValueError as exc:
        raise DumpFormatError(lineno, f"{what}: {exc}") from None
    if len(value) != int(m.group(1)):
        raise DumpFormatError(
            lineno, f"{what} length {int(m.group(1))} does not match its {len(value)} bytes"
        )
    return value


def parse(stream: BinaryIO) -> Iterator[tuple[int, bytes, bytes]]:
    """``(line of the record's '{', key, data)`` for each record of a dump."""
    lines = iter(stream)
    lineno = 0

    def expect(what: str) -> bytes:
        nonlocal lineno
        line = next(lines, None)
        lineno += 1
        if line is None:
            raise DumpFormatError(lineno, f"unexpected end of input: expected {what}")
        return line

    for line in lines:
        lineno += 1
        start = lineno
        if line != b"{\n":
            raise DumpFormatError(lineno, f"expected '{{', found {_preview(line)}")
        key = _field(expect("key(…)"), lineno, _KEY_LINE, "key")
        data = _field(expect("data(…)"), lineno, _DATA_LINE, "data")
        line = expect("'}'")
        if line != b"}\n":
            raise DumpFormatError(lineno, f"expected '}}', found {_preview(line)}")
        yield start, key, data


def read_records(
    stream: BinaryIO, progress: Callable[[int], None] | None = None, step: int = 4096
) -> dict[bytes, bytes]:
    """Every record of a dump, parsed before anything is done with them; a
    key given twice is an error, as in tdbrestore. ``progress(n)`` is told
    of every ``step`` records parsed."""
    found: dict[bytes, bytes] = {}
    for line, key, data in parse(stream):
        if key in found:
            raise DumpFormatError(line, f"key {quoted(key)} appears a second time")
        found[key] = data
        if progress is not None and len(found) % step == 0:
            progress(step)
    return found
