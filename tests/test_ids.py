from embedfleet.ids import new_job_id, primary_key


def test_primary_key_is_deterministic_positive_int64() -> None:
    key = primary_key("docs", "doc-1")
    assert key == primary_key("docs", "doc-1")
    assert 0 <= key < 2**63


def test_primary_key_depends_on_collection_and_id() -> None:
    assert primary_key("docs", "a") != primary_key("docs", "b")
    assert primary_key("docs", "a") != primary_key("other", "a")
    # The separator keeps ("ab", "c") and ("a", "bc") apart.
    assert primary_key("ab", "c") != primary_key("a", "bc")


def test_job_ids_are_unique() -> None:
    assert new_job_id() != new_job_id()
