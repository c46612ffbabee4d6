"""An MLLP listener: HL7 v2 messages over TCP, each committed before it is acknowledged."""

from __future__ import annotations

import asyncio
import itertools
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from tidemark.core import SourceUnavailableError, get_logger

from ._framing import END_BLOCK, START_BLOCK, MessageSplitter, RawMessage
from ._ingest import AdtIngester, MessageResult

_log = get_logger("tracking")

_ESCAPES = (("\\", "\\E\\"), ("|", "\\F\\"), ("^", "\\S\\"), ("&", "\\T\\"), ("~", "\\R\\"))
_READ = 1 << 16


class MllpListener:
    """Receives HL7 v2 ADT messages over MLLP and acknowledges each after it is committed.

    Each message is ingested in its own transaction by ``ingester`` (one at a time, in a worker
    thread, whatever the number of connections), then answered with an original-mode ACK:
    ``AA`` once committed (also for an unsupported event, which is ignored: MSA-3 says so),
    ``AR`` with the reason when the message cannot be used (malformed, cut off), ``AE`` with
    the reason when the database refused it or is unavailable (the sender should resend). A
    frame cut off by the connection closing is recorded as rejected and cannot be answered.
    Use as ``async with MllpListener(...) as listener: await listener.serve()``.
    """

    def __init__(
        self,
        ingester: AdtIngester,
        host: str = "127.0.0.1",
        port: int = 2575,
        *,
        application: str = "TIDEMARK",
        facility: str = "",
    ) -> None:
        self.ingester = ingester
        self.host = host
        self.port = port
        self.application = application
        self.facility = facility
        self._server: asyncio.Server | None = None
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tidemark-mllp")
        self._numbers = itertools.count(1)

    @property
    def address(self) -> tuple[str, int]:
        """The bound host and port (the port the system chose when ``port`` was 0)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the listener is not started")
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    async def start(self) -> None:
        """Bind the port; raises ``OSError`` when it cannot be bound."""
        self._server = await asyncio.start_server(self._connection, self.host, self.port)
        host, port = self.address
        _log.info("mllp listener started", host=host, port=port)

    async def serve(self) -> None:
        """Serve until cancelled."""
        if self._server is None:
            await self.start()
        assert self._server is not None
        await self._server.serve_forever()

    async def close(self) -> None:
        """Stop accepting, and wait for the message being ingested to finish."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        await asyncio.get_running_loop().run_in_executor(None, self._worker.shutdown)

    async def __aenter__(self) -> MllpListener:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    # -- one connection --------------------------------------------------------------------
    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        splitter = MessageSplitter(f"mllp://{peer[0]}:{peer[1]}" if peer else "mllp")
        try:
            while True:
                chunk = await reader.read(_READ)
                if not chunk:
                    break
                for raw in splitter.feed(chunk):
                    ack = await self._answer(raw)
                    writer.write(START_BLOCK + ack + END_BLOCK + b"\r")
                    await writer.drain()
            for raw in splitter.close():
                await self._answer(raw)  # cut off by the closing connection: recorded only
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            _log.info("mllp connection lost", peer=str(peer), error=str(exc))
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except ConnectionError:
                pass

    async def _answer(self, raw: RawMessage) -> bytes:
        loop = asyncio.get_running_loop()
        try:
            [result] = await loop.run_in_executor(
                self._worker, self.ingester.ingest_messages, [raw]
            )
        except SourceUnavailableError as exc:
            return self.acknowledgement(raw, "AE", f"database unavailable: {exc.detail}")
        text = result.reason
        if result.outcome == "unsupported":
            text = f"ignored: {result.reason}"
        return self.acknowledgement(raw, result_code(result), text)

    def acknowledgement(self, raw: RawMessage, code: str, text: str) -> bytes:
        """The ACK of ``raw`` (MSH and MSA, plus ERR with ``text`` for AE and AR)."""
        msh = raw.segments[0].decode("latin-1") if raw.segments else ""
        separator = msh[3:4] if msh.startswith("MSH") and len(msh) > 3 else "|"
        fields = ["MSH", separator, *msh[4:].split(separator)] if msh.startswith("MSH") else []

        def field(number: int) -> str:
            return fields[number] if number < len(fields) else ""

        # Only the received message's own delimiters are known to be safe to copy as they are.
        def plain(value: str) -> str:
            return value if separator == "|" else ""

        trigger = _component(field(9), 2) if separator == "|" else ""
        number = next(self._numbers)
        stamp = datetime.now(UTC)
        header = [
            "MSH",
            "^~\\&",
            self.application,
            self.facility,
            plain(field(3)),
            plain(field(4)),
            stamp.strftime("%Y%m%d%H%M%S+0000"),
            "",
            f"ACK^{trigger}^ACK" if trigger else "ACK",
            f"TM{stamp.strftime('%H%M%S')}{number:06d}",
            plain(field(11)) or "P",
            plain(field(12)) or "2.5",
        ]
        segments = [
            "|".join(header),
            "|".join(("MSA", code, plain(field(10)), _escape(text[:80]))),
        ]
        if code != "AA":
            error = "207" if code == "AE" else "101"
            segments.append(f"ERR||||E|{error}|||{_escape(text)}")
        return "\r".join(segments).encode("utf-8") + b"\r"


def _component(value: str, number: int) -> str:
    parts = value.split("^")
    return parts[number - 1] if number <= len(parts) else ""


def _escape(text: str) -> str:
    for raw, escaped in _ESCAPES:
        text = text.replace(raw, escaped)
    return " ".join(text.split())


def result_code(result: MessageResult) -> str:
    """The acknowledgement code a result earns: AA, AE or AR."""
    if result.outcome != "rejected":
        return "AA"
    return "AE" if result.refused_by_database else "AR"
