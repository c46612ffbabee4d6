"""The MLLP listener on a real socket, driven by the ``hl7`` package's MLLP client: each message
is acknowledged once committed, AR/AE with the reason otherwise."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import hl7
import pytest
from hl7.mllp import open_hl7_connection
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.support import async_wait_until
from tidemark.core import Settings
from tidemark.tracking import TypeCaches
from tidemark.tracking.hl7 import AdtIngester, MllpListener, Patient

from .adt_messages import adt


@pytest.fixture
async def listener(engine) -> AsyncIterator[MllpListener]:
    caches = TypeCaches(Settings({"type_cache": {"enabled": True}}, env={}))
    ingester = AdtIngester(engine, type_caches=caches, batch_size=1)
    async with MllpListener(ingester, "127.0.0.1", 0) as running:
        serving = asyncio.create_task(running.serve())
        yield running
        serving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await serving


async def exchange(listener: MllpListener, *texts: str) -> list[hl7.Message]:
    host, port = listener.address
    reader, writer = await open_hl7_connection(host, port)
    try:
        for text in texts:
            writer.writemessage(hl7.parse(text))
        await writer.drain()
        return [await asyncio.wait_for(reader.readmessage(), 30) for _ in texts]
    finally:
        writer.close()
        await writer.wait_closed()


def msa(ack: hl7.Message) -> tuple[str, str, str]:
    """MSA-1, MSA-2 and MSA-3 (unescaped, as the hl7 package reads it)."""
    segment = ack.segment("MSA")
    return str(segment(1)), str(segment(2)), ack.unescape(str(segment(3)))


def mrns(engine) -> list[str]:
    with Session(engine) as session:
        return sorted(session.scalars(select(Patient.mrn)))


async def test_a_message_is_acknowledged_after_it_is_committed(engine, listener):
    [ack] = await exchange(listener, adt(control="K1", mrn="M1"))
    assert msa(ack) == ("AA", "K1", "")
    assert str(ack.segment("MSH")(9)) == "ACK^A01^ACK"
    assert mrns(engine) == ["M1"]  # committed before the ACK left


async def test_pipelined_messages_are_answered_in_order(engine, listener):
    acks = await exchange(listener, *[adt(control=f"K{i}", mrn=f"M{i}") for i in range(4)])
    assert [msa(ack)[:2] for ack in acks] == [("AA", f"K{i}") for i in range(4)]
    assert mrns(engine) == ["M0", "M1", "M2", "M3"]


async def test_a_malformed_message_is_rejected_with_the_reason(engine, listener):
    [ack] = await exchange(listener, adt(control="BAD", dob="1980-01-01"))
    code, control, text = msa(ack)
    assert (code, control) == ("AR", "BAD")
    assert "PID-7: not an HL7 date" in text
    assert "PID-7" in str(ack.segment("ERR"))
    assert mrns(engine) == []
    assert listener.ingester.summary.rejected == 1


async def test_a_message_the_database_refuses_gets_an_application_error(engine, listener):
    overflow = adt("A08", control="OVER", death="00010101000000+1400")
    [ack] = await exchange(listener, overflow)
    code, control, text = msa(ack)
    assert (code, control) == ("AE", "OVER")
    assert text.startswith("cannot store")


async def test_an_unsupported_event_is_accepted_and_ignored(engine, listener):
    a28 = adt(control="Z1").replace("ADT^A01^ADT_A01", "ADT^A28^ADT_A05")
    [ack] = await exchange(listener, a28)
    code, _control, text = msa(ack)
    assert code == "AA" and text.startswith("ignored: unsupported message type ADT^A28")
    assert listener.ingester.summary.unsupported == {"ADT^A28": 1}
    assert mrns(engine) == []


async def test_a_frame_cut_by_the_closing_connection_is_recorded_as_rejected(engine, listener):
    host, port = listener.address
    _reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"\x0b" + adt(control="CUT").encode()[:120])
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    summary = listener.ingester.summary
    await async_wait_until(lambda: summary.rejected == 1, timeout=30)
    assert summary.problems[0].reason.startswith("cut off: MLLP frame")
    assert mrns(engine) == []
