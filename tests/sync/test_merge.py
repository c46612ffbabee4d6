from tidemark.core import canonical_bytes
from tidemark.sync import merge_blobs, new_id, purge_tombstones

ID = new_id("k")
T1 = "2024-01-01T00:00:01.000000Z"
T2 = "2024-01-01T00:00:02.000000Z"
T3 = "2024-01-01T00:00:03.000000Z"


def live(title, stamp, version=1, entity_id=ID):
    return {
        "Note": {
            entity_id: {"id": entity_id, "title": title, "updated_at": stamp, "version": version}
        }
    }


def dead(stamp, entity_id=ID):
    return {"deleted": {"Note": {entity_id: stamp}}}


def both_orders(a, b, **kwargs):
    one = merge_blobs(a, b, **kwargs)
    two = merge_blobs(b, a, **kwargs)
    assert canonical_bytes(one.blob) == canonical_bytes(two.blob), "merge must be symmetric"
    return one


def test_the_newer_update_wins_on_both_sides():
    result = both_orders(live("old", T1, 1), live("new", T2, 2))
    assert result.blob == live("new", T2, 2)
    forward = merge_blobs(live("old", T1, 1), live("new", T2, 2))
    assert forward.changed_a and not forward.changed_b
    assert forward.conflicts == ()  # a plain propagation of a newer version


def test_a_delete_newer_than_the_update_wins_in_both_orders():
    result = both_orders(live("x", T1), dead(T2))
    assert result.blob == dead(T2)


def test_an_update_newer_than_the_delete_wins_in_both_orders_and_is_reported():
    result = merge_blobs(dead(T1), live("x", T2))
    assert result.blob == live("x", T2)
    assert [c.reason for c in result.conflicts] == ["update-after-delete"]
    assert result.conflicts[0].winner == "b"
    assert both_orders(live("x", T2), dead(T1)).blob == live("x", T2)


def test_a_delete_wins_an_exact_tie_with_an_update():
    result = both_orders(live("x", T2), dead(T2))
    assert result.blob == dead(T2)
    assert [c.reason for c in result.conflicts] == ["delete-wins-tie"]


def test_identical_stamps_with_different_content_converge_to_one_version():
    a, b = live("mine", T2), live("theirs", T2)
    one, two = merge_blobs(a, b), merge_blobs(b, a)
    assert one.blob == two.blob
    assert one.blob in (a, b)
    assert [c.reason for c in one.conflicts] == ["same-stamp"]
    # Applying the outcome again changes nothing: the merge is idempotent.
    again = merge_blobs(one.blob, one.blob)
    assert not again.changed_a and not again.changed_b


def test_concurrent_updates_of_the_same_version_are_reported():
    result = merge_blobs(live("mine", T2, 3), live("theirs", T3, 3))
    assert result.blob == live("theirs", T3, 3)
    assert [(c.reason, c.winner) for c in result.conflicts] == [("concurrent-update", "b")]


def test_entities_only_on_one_side_are_copied_to_the_other():
    other = new_id("k")
    result = both_orders(live("a", T1), live("b", T1, entity_id=other))
    assert set(result.blob["Note"]) == {ID, other}
    forward = merge_blobs(live("a", T1), live("b", T1, entity_id=other))
    assert forward.changes_a == 1 and forward.changes_b == 1


def test_a_missing_side_receives_everything_including_tombstones():
    blob = {**live("a", T1), **dead(T2, new_id("k"))}
    result = merge_blobs(blob, None)
    assert result.blob == blob
    assert not result.changed_a and result.changed_b


def test_merging_equal_blobs_changes_nothing():
    blob = {**live("a", T1), **dead(T2, new_id("k"))}
    result = merge_blobs(blob, dict(blob))
    assert (result.changes_a, result.changes_b, result.conflicts) == (0, 0, ())


def test_an_expired_tombstone_is_not_copied_to_a_side_that_never_had_the_entity():
    result = both_orders(dead(T1), None, expired_before=T2)
    assert result.blob == {}
    assert result.expired_dropped == 1
    forward = merge_blobs(dead(T1), None, expired_before=T2)
    assert forward.changed_a and not forward.changed_b


def test_an_expired_tombstone_still_defeats_an_older_live_version():
    result = both_orders(dead(T2), live("x", T1), expired_before=T3)
    assert result.blob == dead(T2)


def test_purge_removes_only_tombstones_older_than_the_horizon():
    old, young = new_id("k"), new_id("k")
    blob = {**live("a", T1), "deleted": {"Note": {old: T1, young: T3}}}
    purged, removed = purge_tombstones(blob, T2)
    assert removed == 1
    assert purged == {**live("a", T1), "deleted": {"Note": {young: T3}}}
    assert blob["deleted"]["Note"][old] == T1  # the input is untouched


FUTURE = "9999-12-31T23:59:59.999999Z"
HORIZON = "2024-01-01T01:00:00.000000Z"  # the local clock plus the allowed skew


def test_a_version_stamped_beyond_the_skew_never_wins_and_is_reported():
    result = both_orders(live("poison", FUTURE, 2), live("edit", T2, 2), not_after=HORIZON)
    assert result.blob == live("edit", T2, 2)
    [quarantined] = result.quarantined
    assert (quarantined.entity_id, quarantined.stamp, quarantined.fault) == (ID, FUTURE, "ahead")
    assert quarantined.version["title"] == "poison"  # reported whole: nothing lost silently
    forward = merge_blobs(live("poison", FUTURE), live("edit", T2), not_after=HORIZON)
    assert forward.changed_a and not forward.changed_b  # the side holding it is rewritten
    assert forward.quarantined[0].side == "a"


def test_a_quarantined_version_without_a_rival_leaves_both_sides():
    result = merge_blobs(live("poison", FUTURE), None, not_after=HORIZON)
    assert result.blob == {}
    assert result.changed_a and not result.changed_b
    assert [q.fault for q in result.quarantined] == ["ahead"]


def test_stamps_that_are_not_times_are_quarantined_but_missing_ones_are_not():
    garbage = merge_blobs(live("x", "yesterday"), live("y", T1), not_after=HORIZON)
    assert garbage.blob == live("y", T1)
    assert [(q.stamp, q.fault) for q in garbage.quarantined] == [("yesterday", "invalid")]
    unstamped = {"Note": {ID: {"id": ID, "title": "old data"}}}
    kept = merge_blobs(unstamped, None, not_after=HORIZON)
    assert kept.blob == unstamped and kept.quarantined == ()


def test_a_tombstone_beyond_the_skew_is_quarantined_too():
    result = both_orders(dead(FUTURE), live("kept", T1), not_after=HORIZON)
    assert result.blob == live("kept", T1)
    assert result.quarantined[0].version == FUTURE


def test_without_a_horizon_the_merge_is_unchanged():
    assert merge_blobs(live("poison", FUTURE), live("edit", T2)).blob == live("poison", FUTURE)
