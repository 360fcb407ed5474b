"""The id -> slot hash table (shard/id_map.py) answers as a dict does through random adds,
moves and removes, growth and rehashing, keyed by the slot table's strings."""

from __future__ import annotations

import numpy as np

from shardvec.shard.id_map import IdMap
from shardvec.shard.slots import SlotTable


def test_id_map_matches_a_dict_under_random_operations() -> None:
    rng = np.random.default_rng(5)
    names = np.full(50_000, "", dtype=object)
    m = IdMap(lambda: names)
    model: dict[str, int] = {}
    free = list(range(len(names)))[::-1]
    for step in range(40):
        for _ in range(int(rng.integers(1, 3000))):  # adds
            rid = f"id-{int(rng.integers(0, 10**9))}"
            if rid in model or not free:
                continue
            slot = free.pop()
            names[slot] = rid
            m.update([(rid, slot)])
            model[rid] = slot
        held = list(model)
        for j in rng.permutation(len(held))[: int(rng.integers(0, len(held) // 2 + 1))]:
            rid = held[j]
            del m[rid]
            free.append(model.pop(rid))
            names[free[-1]] = ""
        assert len(m) == len(model)
        probe = list(model)[:500] + [f"missing-{step}-{i}" for i in range(200)]
        for rid in probe:
            assert (rid in m) == (rid in model)
            assert m.get(rid) == model.get(rid)
    assert sorted(m) == sorted(model)
    assert m.nbytes() <= 8 * max(1024, 4 * len(model))


def test_slot_table_reuses_slots_and_finds_ids() -> None:
    t = SlotTable()
    ids = [f"r{i}" for i in range(3000)]
    t.apply(t.plan(ids, []), ids)
    assert len(t) == 3000 and t.id_to_slot["r17"] == 17
    plan = t.plan(["r5", "new"], ["r7", "r8"])
    assert plan.up_slots == [5, 7]  # kept id keeps its slot; the new id takes r7's freed slot
    t.apply(plan, ["r5", "new"])
    assert "r7" not in t.id_to_slot and "r8" not in t.id_to_slot
    assert t.id_to_slot["new"] == 7 and t.slot_to_id[7] == "new" and len(t) == 2999
