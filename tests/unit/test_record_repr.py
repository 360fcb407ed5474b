"""A row or a hit prints in one short line: a few values of its vector, not all of them."""

from __future__ import annotations

import numpy as np

from shardvec.contract.types import Hit, Record


def test_a_record_and_a_hit_show_their_vector_in_brief() -> None:
    vec = np.linspace(-1, 1, 384).astype(np.float32)
    rec = Record("a", vec, {"src": "pets.md"}, "dogs are loyal pets")
    text = repr(rec)
    assert text == ("Record(id='a', vector=<float32[384]: -1, -0.9948, -0.9896, ...>, "
                    "metadata={'src': 'pets.md'}, document='dogs are loyal pets')")
    hit = Hit("a", 0.87654321, {"src": "pets.md"}, vec, "dogs", group="pets.md")
    assert repr(hit) == ("Hit(id='a', score=0.8765, metadata={'src': 'pets.md'}, "
                         "vector=<float32[384]: -1, -0.9948, -0.9896, ...>, document='dogs', "
                         "group='pets.md')")
    assert "vector=None" in repr(Record("b", None, None))
    assert len(repr(rec)) < 200
