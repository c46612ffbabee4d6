from datetime import UTC, date, datetime

import pytest

from tidemark.core import ParameterValidationError
from tidemark.sync import (
    DateKeyStrategy,
    DateRange,
    EntityCounts,
    KeyMetadata,
    KeyStrategy,
    LogicalKeyStrategy,
)


def known(*keys, name="Note"):
    return {key: KeyMetadata("h", None, {name: EntityCounts(1, 0)}) for key in keys}


def test_the_default_strategy_puts_everything_in_the_global_key():
    strategy = KeyStrategy()
    assert strategy.logical_key("Note", {"anything": 1}) is None
    keys = strategy.query_keys("app", "Note", None, known("app.a", "other.b"))
    assert keys == ["app.a", "app.global"]


def test_logical_key_strategy_partitions_by_a_member_and_falls_back_to_global():
    strategy = LogicalKeyStrategy("region")
    assert strategy.logical_key("Note", {"region": "eu/west"}) == "eu_west"
    assert strategy.logical_key("Note", {}) is None
    assert strategy.query_keys("app", "Note", ["eu/west", "us"], {}) == ["app.eu_west", "app.us"]
    assert strategy.query_keys("app", "Note", "us", {}) == ["app.us"]


def test_logical_key_strategy_query_without_scope_reads_keys_holding_the_entity_name():
    strategy = LogicalKeyStrategy(key=lambda name, entity: entity.get("tenant"))
    metadata = {**known("app.t1"), **known("app.t2", name="Task")}
    assert strategy.query_keys("app", "Note", None, metadata) == ["app.global", "app.t1"]


def test_date_strategy_partitions_by_year_of_created_at():
    strategy = DateKeyStrategy()
    assert strategy.logical_key("Note", {"created_at": "2024-05-01T10:00:00Z"}) == "Note.2024"
    assert (
        strategy.logical_key("Note", {"created_at": datetime(2023, 1, 1, tzinfo=UTC)})
        == "Note.2023"
    )
    assert strategy.logical_key("Note", {"created_at": "not a date"}) is None


@pytest.mark.parametrize(
    ("granularity", "label"),
    [("year", "Note.2024"), ("month", "Note.2024-05"), ("day", "Note.2024-05-01")],
)
def test_date_strategy_extends_to_month_and_day(granularity, label):
    strategy = DateKeyStrategy(granularity=granularity)
    assert strategy.logical_key("Note", {"created_at": "2024-05-01T10:00:00Z"}) == label


def test_date_strategy_lists_every_period_of_a_range():
    years = DateKeyStrategy()
    assert years.query_keys("app", "Note", DateRange(date(2022, 6, 1), date(2024, 1, 1)), {}) == [
        "app.Note.2022",
        "app.Note.2023",
        "app.Note.2024",
    ]
    months = DateKeyStrategy(granularity="month")
    assert months.query_keys("app", "Note", (date(2023, 11, 15), date(2024, 2, 1)), {}) == [
        "app.Note.2023-11",
        "app.Note.2023-12",
        "app.Note.2024-01",
        "app.Note.2024-02",
    ]
    days = DateKeyStrategy(granularity="day")
    assert days.query_keys("app", "Note", date(2024, 2, 29), {}) == ["app.Note.2024-02-29"]
    assert years.query_keys("app", "Note", 2021, {}) == ["app.Note.2021"]


def test_date_strategy_without_scope_reads_known_periods_of_its_entity_name():
    strategy = DateKeyStrategy()
    metadata = known("app.Note.2023", "app.Note.2024", "app.Task.2024", "app.Notes.2024")
    assert strategy.query_keys("app", "Note", None, metadata) == [
        "app.Note.2023",
        "app.Note.2024",
        "app.global",
    ]


def test_a_subclass_can_partition_by_quarter():
    class QuarterStrategy(DateKeyStrategy):
        def period(self, moment):
            return f"{moment.year}-Q{(moment.month - 1) // 3 + 1}"

        def next_period(self, moment):
            month = ((moment.month - 1) // 3 + 1) * 3 + 1
            return date(moment.year + (month > 12), (month - 1) % 12 + 1, 1)

    strategy = QuarterStrategy()
    assert strategy.logical_key("Note", {"created_at": "2024-05-01T00:00:00Z"}) == "Note.2024-Q2"
    assert strategy.query_keys("app", "Note", (date(2024, 2, 1), date(2024, 7, 1)), {}) == [
        "app.Note.2024-Q1",
        "app.Note.2024-Q2",
        "app.Note.2024-Q3",
    ]


def test_a_reversed_date_range_is_a_parameter_error():
    with pytest.raises(ParameterValidationError):
        DateKeyStrategy().query_keys("app", "Note", (date(2024, 1, 2), date(2024, 1, 1)), {})
