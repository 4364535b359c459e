"""l3fabric/layered.py: each version reads like the dict it stands for, and editing never changes an older one."""

from __future__ import annotations

import random

import pytest

from l3fabric.layered import Layered


@pytest.mark.parametrize("seed", range(10))
def test_versions_equal_their_dicts_and_older_versions_stay_as_they_were(seed: int) -> None:
    rng = random.Random(seed)
    expected = {f"k{i}": i for i in range(rng.choice([0, 5, 300]))}
    version = Layered(dict(expected))
    history = [(version, dict(expected))]
    for step in range(200):
        draft = version.edit()
        for _ in range(rng.choice([1, 2, 10])):
            key = f"k{rng.randrange(400)}"
            if rng.random() < 0.4:
                draft.pop(key, None)
                expected.pop(key, None)
            else:
                draft[key] = expected[key] = step
            assert (key in draft) == (key in expected) and draft.get(key) == expected.get(key)
        version = draft.done()
        history.append((version, dict(expected)))
    for old, as_dict in history:
        assert len(old) == len(as_dict) and dict(old.items()) == as_dict
        assert old == as_dict and all(old[k] == v for k, v in as_dict.items())
        assert "missing" not in old and old.get("missing", 7) == 7
        with pytest.raises(KeyError):
            old["missing"]


def test_a_few_changes_share_the_base_and_many_fold_into_a_new_one() -> None:
    first = Layered({i: i for i in range(10_000)})
    draft = first.edit()
    draft[10_000] = 1
    del draft[0]
    second = draft.done()
    assert second._base is first._base and len(second) == 10_000  # nothing copied
    draft = second.edit()
    for i in range(1, 2_000):
        del draft[i]
    third = draft.done()
    assert third._base is not first._base and not third._top and not third._gone
    assert len(third) == 8_001 and 10_000 in third and 1 not in third
    assert len(first) == 10_000 and 0 in first  # the first version is untouched
