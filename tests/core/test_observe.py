import io
import json
import threading

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
