import io
import json
import threading
from collections.abc import Mapping

import pytest

from tidemark.core import Counters, configure_logging, get_logger


def test_json_logs_carry_component_and_fields():
    stream = io.StringIO()
    configure_logging("DEBUG", json=True, stream=stream)
    get_logger("store").info("document stored", resource="schools", change_version=4)
    entry = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert entry["component"] == "store"
    assert entry["message"] == "document stored"
    assert entry["resource"] == "schools" and entry["change_version"] == 4
    assert entry["level"] == "info"


def test_text_logs_are_readable():
    stream = io.StringIO()
    configure_logging("INFO", json=False, stream=stream)
    get_logger("mappings").warning("server down", url="http://x")
    line = stream.getvalue().strip().splitlines()[-1]
    assert "WARNING" in line and "mappings" in line and "url=http://x" in line


def test_counters_are_thread_safe():
    counters = Counters("polls")

    def work() -> None:
        for _ in range(1000):
            counters.increment("polls")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counters["polls"] == 4000
    assert counters["never"] == 0
    counters.reset()
    assert counters.snapshot() == {"polls": 0}


def test_counters_read_as_a_mapping_of_names_to_values():
    counters = Counters("polls", "reads")
    counters.increment("reads", 3)
    counters.increment("errors")
    assert isinstance(counters, Mapping)
    assert dict(counters) == {"polls": 0, "reads": 3, "errors": 1}
    assert len(counters) == 3
    assert list(counters) == ["polls", "reads", "errors"]
    assert list(counters.keys()) == ["polls", "reads", "errors"]
    assert list(counters.values()) == [0, 3, 1]
    assert dict(counters.items()) == counters.snapshot()
    assert "reads" in counters and "never" not in counters
    assert counters == {"polls": 0, "reads": 3, "errors": 1}


def test_a_name_never_incremented_reads_zero_but_is_not_held():
    counters = Counters("polls")
    assert counters["never"] == 0
    assert "never" not in counters
    assert counters.get("never") is None
    assert counters.get("never", 7) == 7
    assert counters.get("polls", 7) == 0
    assert len(counters) == 1
    counters.increment("never")
    assert "never" in counters and counters.get("never") == 1


def test_counters_cannot_be_written_through_the_mapping():
    counters = Counters("polls")
    with pytest.raises(TypeError):
        counters["polls"] = 5  # type: ignore[index]
    with pytest.raises(TypeError):
        del counters["polls"]  # type: ignore[attr-defined]
    assert counters.snapshot() == {"polls": 0}


def test_counters_reset_keeps_every_name_at_zero_and_listeners_hear_increments():
    heard: list[tuple[str, int]] = []
    counters = Counters("polls")
    counters.add_listener(lambda name, amount: heard.append((name, amount)))
    counters.increment("polls", 2)
    counters.increment("errors")
    counters.reset()
    assert dict(counters) == {"polls": 0, "errors": 0}
    assert heard == [("polls", 2), ("errors", 1)]
    assert repr(counters) == "Counters({'polls': 0, 'errors': 0})"
