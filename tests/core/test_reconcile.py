from hypothesis import given
from hypothesis import strategies as st

from tidemark.core import partition_keys, reconcile


def test_plan_creates_updates_deletes_in_key_order_and_counts_unchanged():
    plan = reconcile({"b": 2, "a": 1, "d": 4}, {"a": 1, "b": 3, "c": 0})
    assert plan.creates == [("d", 4)]
    assert plan.updates == [("b", 2)]
    assert plan.deletes == ["c"]
    assert plan.unchanged == 1
    assert plan.upserts == [("b", 2), ("d", 4)]
    assert not plan.is_empty


def test_custom_sameness():
    plan = reconcile({"a": "X"}, {"a": "x"}, same=lambda a, b: a.lower() == b.lower())
    assert plan.is_empty and plan.unchanged == 1


def test_partition_keys_set_algebra():
    parts = partition_keys(["c", "a", "b"], ["b", "d"])
    assert (parts.only_a, parts.only_b, parts.both) == (["a", "c"], ["d"], ["b"])


@given(
    st.dictionaries(st.text(max_size=3), st.integers(0, 3)),
    st.dictionaries(st.text(max_size=3), st.integers(0, 3)),
)
def test_applying_the_plan_yields_the_desired_state(desired, current):
    plan = reconcile(desired, current)
    state = dict(current)
    state.update(plan.upserts)
    for key in plan.deletes:
        del state[key]
    assert state == desired
    assert plan.unchanged == sum(1 for k in desired if k in current and current[k] == desired[k])
