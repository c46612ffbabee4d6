"""A visit's stays derived from the set of its movements in message order (pure, no I/O)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

#: What each trigger does to a visit's stays.
ADMIT: Final = frozenset(("A01", "A04"))
TRANSFER: Final = "A02"
DISCHARGE: Final = "A03"
#: A cancellation undoes the newest earlier event of these triggers that is still in effect.
CANCELS: Final = {"A11": ADMIT, "A12": frozenset((TRANSFER,)), "A13": frozenset((DISCHARGE,))}
MOVEMENT_TRIGGERS: Final = ADMIT | {TRANSFER, DISCHARGE} | CANCELS.keys()


@dataclass(frozen=True, slots=True)
class Movement:
    """One movement message of a visit: its order key, trigger, time and location (if any)."""

    order: str
    trigger: str
    at: datetime
    location: int | None


@dataclass(frozen=True, slots=True)
class Stay:
    """A stay at ``location`` from ``start`` until ``end`` (None: still there)."""

    location: int
    start: datetime
    end: datetime | None


def effective_movements(movements: Iterable[Movement]) -> list[Movement]:
    """The movements still in effect, in message order, once the cancellations are applied.

    A11 (cancel admit) removes the newest earlier admission still in effect and everything
    after it; A12 (cancel transfer) and A13 (cancel discharge) remove the newest earlier
    transfer or discharge still in effect. A cancellation that finds nothing to undo does
    nothing (its event may not have arrived yet: once it does, it is undone).
    """
    effective: list[Movement] = []
    for movement in sorted(movements, key=lambda m: m.order):
        undone = CANCELS.get(movement.trigger)
        if undone is None:
            effective.append(movement)
            continue
        for position in range(len(effective) - 1, -1, -1):
            if effective[position].trigger in undone:
                if movement.trigger == "A11":
                    del effective[position:]
                else:
                    del effective[position]
                break
    return effective


def stays_of(movements: Iterable[Movement]) -> list[Stay]:
    """The stays the movements describe, in order: a function of the set of movements.

    Recomputed from every movement of the visit in message order, so a late admission lands
    before the discharge that arrived first, and a cancellation undoes its event whichever of
    the two arrived first.

    An admission opens a stay at its location (at a new location when already admitted, it
    moves there); a transfer closes the open stay and opens one at the new location (nothing
    when already there, or after the discharge); a discharge closes the open stay.
    """
    stays: list[Stay] = []
    current: Stay | None = None
    discharged = False
    for movement in effective_movements(movements):
        trigger, at, location = movement.trigger, movement.at, movement.location
        if trigger == DISCHARGE:
            if current is not None:
                stays.append(Stay(current.location, current.start, at))
                current = None
            discharged = True
            continue
        if trigger == TRANSFER and discharged:
            continue
        if trigger in ADMIT:
            discharged = False
        if location is None or (current is not None and current.location == location):
            continue
        if current is not None:
            stays.append(Stay(current.location, current.start, at))
        current = Stay(location, at, None)
    if current is not None:
        stays.append(current)
    return stays
