"""What an ADT ingest did: messages by outcome, rows by table, and every problem with its place."""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

Outcome = Literal["changed", "unchanged", "stale", "rejected", "unsupported"]


@dataclass(frozen=True, slots=True)
class MessageProblem:
    """A message that was rejected (or a field of it that was ignored): where it is and why."""

    source: str
    index: int
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: message {self.index} (line {self.line}): {self.reason}"


@dataclass(slots=True)
class IngestSummary:
    """What an ingest did.

    Every message is exactly one of: ``changed`` (it created, updated or deleted a row),
    ``unchanged`` (it wrote no value: a replay, or nothing new), ``stale`` (it wrote no value
    and a newer message had already been applied to its patient or visit), ``rejected`` (it
    could not be used: one entry of ``problems`` each, an unreadable file too) or
    ``unsupported`` (an event the example does not apply, counted by type, e.g.
    ``{"ADT^A28": 3}``). ``warnings`` lists fields that could not be read and were ignored in
    messages that were applied.

    ``created``/``updated``/``deleted`` count rows of committed messages (type entities count
    when created or changed); ``audit_rows`` is the number of audit rows written; ``by_table``
    breaks the row counts down.
    """

    messages: int = 0
    changed: int = 0
    unchanged: int = 0
    stale: int = 0
    rejected: int = 0
    unsupported: dict[str, int] = field(default_factory=dict)
    created: int = 0
    updated: int = 0
    deleted: int = 0
    audit_rows: int = 0
    by_table: dict[str, dict[str, int]] = field(default_factory=dict)
    problems: list[MessageProblem] = field(default_factory=list)
    warnings: list[MessageProblem] = field(default_factory=list)

    @property
    def ingested(self) -> int:
        """Messages committed: changed, unchanged or stale."""
        return self.changed + self.unchanged + self.stale

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (with ``ingested``)."""
        values = dataclasses.asdict(self)
        values["ingested"] = self.ingested
        return values

    def count(self, outcome: Outcome, message_type: str | None = None) -> None:
        """Count one message under ``outcome`` (``message_type`` for an unsupported one)."""
        self.messages += 1
        if outcome == "unsupported":
            key = message_type or "?"
            self.unsupported[key] = self.unsupported.get(key, 0) + 1
        else:
            setattr(self, outcome, getattr(self, outcome) + 1)

    def add_rows(self, tally: RowTally) -> None:
        """Add the row outcomes of one committed message."""
        for (table, outcome), number in tally.rows.items():
            per_table = self.by_table.setdefault(table, {})
            per_table[outcome] = per_table.get(outcome, 0) + number
            if outcome in ("created", "updated", "deleted", "audit_rows"):
                setattr(self, outcome, getattr(self, outcome) + number)


class RowTally:
    """Row outcomes of one message, added to the summary only once it commits."""

    __slots__ = ("rows",)

    def __init__(self) -> None:
        self.rows: Counter[tuple[str, str]] = Counter()

    def add(self, table: str, outcome: str) -> None:
        self.rows[(table, outcome)] += 1

    @property
    def wrote_values(self) -> bool:
        """True when a row was created, updated or deleted."""
        return any(outcome != "unchanged" for _table, outcome in self.rows)
