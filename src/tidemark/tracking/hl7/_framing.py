"""Cutting a byte stream into HL7 v2 messages as it arrives: MLLP frames or plain segment lines."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

START_BLOCK, END_BLOCK = b"\x0b", b"\x1c"
BOM = b"\xef\xbb\xbf"

_LINE_BREAK = re.compile(rb"\r\n|\r|\n")
_PADDING = b" \t"
_ENVELOPE = (b"FHS", b"FTS", b"BHS", b"BTS")
_CUT_AT_END = (
    "cut off: MLLP frame has a start byte (0x0B) but no end byte (0x1C) before the input ended"
)
_CUT_BY_START = (
    "cut off: MLLP frame has a start byte (0x0B) but a new frame started before its end byte (0x1C)"
)
_NO_START = "MLLP end byte (0x1C) without a start byte (0x0B): the message may have lost its start"


@dataclass(frozen=True, slots=True)
class RawMessage:
    """One message cut out of a source: its segments (bytes) and the line each starts on.

    ``defect`` is set when the framing shows the message is incomplete (it must be rejected);
    ``end`` is how far into the source (in bytes) the splitter had read when it cut the message
    out, at or after the message's last byte: for progress reports.
    """

    source: str
    index: int
    line: int
    segments: tuple[bytes, ...]
    segment_lines: tuple[int, ...]
    defect: str | None = None
    end: int = 0


class MessageSplitter:
    """Cuts a byte stream into :class:`RawMessage` objects, chunk by chunk.

    Feed chunks as they arrive with :meth:`feed` and call :meth:`close` at the end of the input;
    each returns the messages completed so far. Segments end with CR, LF or CRLF; a message
    starts at MSH. Inside MLLP frames (``0x0B`` … ``0x1C``) one frame is one message; outside
    them, plain lines are read the same way. Blank lines, a UTF-8 byte order mark before a
    segment and batch envelopes (FHS/BHS/BTS/FTS) are skipped. Lines before the first MSH form a
    message of their own, which fails to parse: nothing is silently dropped. ``index`` counts
    messages from 1. Not thread-safe.
    """

    def __init__(self, source: str = "<bytes>") -> None:
        self.source = source
        self._pending = bytearray()
        self._offset = 0  # stream offset of _pending[0]
        self._line = 1  # line number at _pending[0]
        self._after_cr = False  # the bytes consumed so far end with CR (a CRLF may be split)
        self._in_frame = False
        self._index = 0
        self._closed = False

    @property
    def consumed(self) -> int:
        """Bytes cut into messages so far (all of the input once closed)."""
        return self._offset

    def feed(self, chunk: bytes) -> list[RawMessage]:
        """Add ``chunk`` and return the messages it completed."""
        if self._closed:
            raise RuntimeError("MessageSplitter is closed")
        self._pending += chunk
        out: list[RawMessage] = []
        self._drain(out, final=False)
        return out

    def close(self) -> list[RawMessage]:
        """End of input: return the remaining messages (a frame still open is cut off)."""
        if self._closed:
            return []
        out: list[RawMessage] = []
        self._drain(out, final=True)
        if self._in_frame:
            self._emit(out, len(self._pending), _CUT_AT_END)
            self._in_frame = False
        elif self._pending:
            self._emit(out, len(self._pending), None)
        self._closed = True
        return out

    # -- scanning --------------------------------------------------------------------------
    def _drain(self, out: list[RawMessage], *, final: bool) -> None:
        pending = self._pending
        while pending:
            if self._in_frame:
                end = pending.find(END_BLOCK)
                start = pending.find(START_BLOCK)
                if start >= 0 and (end < 0 or start < end):
                    self._emit(out, start, _CUT_BY_START)
                    self._consume(1)  # the new start byte: still inside a frame
                    continue
                if end < 0:
                    return
                self._emit(out, end, None)
                self._consume(1)
                self._in_frame = False
                continue
            start = pending.find(START_BLOCK)
            end = pending.find(END_BLOCK)
            if end >= 0 and (start < 0 or end < start):
                self._emit(out, end, _NO_START)
                self._consume(1)
                continue
            if start >= 0:
                self._emit(out, start, None)
                self._consume(1)
                self._in_frame = True
                continue
            if final:
                return
            # Plain lines: every message before the last MSH is complete.
            cut = max(pending.rfind(b"\rMSH"), pending.rfind(b"\nMSH"))
            if cut >= 0:
                self._emit(out, cut + 1, None)
            return

    def _consume(self, length: int) -> None:
        region = bytes(self._pending[:length])
        self._count_lines(region)
        del self._pending[:length]
        self._offset += length

    def _count_lines(self, region: bytes) -> None:
        if not region:
            return
        breaks = len(_LINE_BREAK.findall(region))
        if self._after_cr and region[:1] == b"\n":
            breaks -= 1  # the LF of a CRLF whose CR ended the previous region
        self._line += breaks
        self._after_cr = region[-1:] == b"\r"

    def _emit(self, out: list[RawMessage], length: int, defect: str | None) -> None:
        """Cut the first ``length`` pending bytes into messages; ``defect`` marks the last one."""
        region = bytes(self._pending[:length])
        first_line = self._line
        if self._after_cr and region[:1] == b"\n":
            first_line -= 1
        messages = list(self._messages(region, first_line))
        end = self._offset + length
        self._count_lines(region)
        del self._pending[:length]
        self._offset = end
        if defect is not None:
            if messages:
                messages[-1] = _with(messages[-1], defect)
            else:
                self._index += 1
                messages.append(RawMessage(self.source, self._index, first_line, (), (), defect))
        out.extend(_with(message, message.defect, end) for message in messages)

    def _messages(self, region: bytes, first_line: int) -> Iterator[RawMessage]:
        segments: list[bytes] = []
        lines: list[int] = []
        for number, raw_line in enumerate(_LINE_BREAK.split(region), start=first_line):
            line = raw_line.strip(_PADDING)
            if line[:3] == BOM:
                line = line[3:].lstrip(_PADDING)
            if not line or line[:3] in _ENVELOPE:
                continue
            if line.startswith(b"MSH") and segments:
                self._index += 1
                yield RawMessage(self.source, self._index, lines[0], tuple(segments), tuple(lines))
                segments, lines = [], []
            segments.append(line)
            lines.append(number)
        if segments:
            self._index += 1
            yield RawMessage(self.source, self._index, lines[0], tuple(segments), tuple(lines))


def _with(message: RawMessage, defect: str | None, end: int | None = None) -> RawMessage:
    return RawMessage(
        message.source,
        message.index,
        message.line,
        message.segments,
        message.segment_lines,
        defect,
        message.end if end is None else end,
    )


def split_messages(data: bytes, source: str = "<bytes>") -> Iterator[RawMessage]:
    """Cut ``data`` into messages (see :class:`MessageSplitter` for the rules)."""
    splitter = MessageSplitter(source)
    yield from splitter.feed(data)
    yield from splitter.close()
