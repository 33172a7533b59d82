"""The one seeded draw behind the holdout, the overlap share and the review audit share.

The figures below were computed with the three copies this helper replaced: if a draw moved, stored
projects would see documents change sides (holdout <-> pool, overlap or not, audited or not) on the
next import or policy change, so these pins must never be edited to make a change pass.
"""

from __future__ import annotations

import pytest

from labeling.models import text_hash
from labeling.services.documents import holdout_draw
from labeling.services.overlap import _share_draw
from labeling.services.review import _audit_draw
from labeling.services.sampling import seeded_draw

# (key, the draw's fraction of 2**64) under the original three copies.
KNOWN = [
    ("11:" + "a" * 64, 0.5157948935287255),
    ("11:overlap:" + "a" * 64, 0.46584025630092474),
    ("0:0123abcd", 0.7843308613698923),
    ("0:overlap:0123abcd", 0.3230612510610417),
    ("11:audit:1", 0.4503693678779174),
    ("0:audit:42", 0.5209393662771479),
    ("7:audit:12345", 0.5020097656439085),
]


@pytest.mark.parametrize(("key", "fraction"), KNOWN)
def test_a_key_lands_on_the_side_it_always_did(key, fraction):
    assert seeded_draw(key, fraction + 1e-12)
    assert not seeded_draw(key, fraction - 1e-12)


def test_a_share_of_zero_or_less_draws_nothing():
    assert not seeded_draw("0:0123abcd", 0.0)
    assert not seeded_draw("0:0123abcd", -0.5)
    assert seeded_draw("0:0123abcd", 1.0)


def test_the_three_draws_keep_their_keys_and_so_their_documents():
    hashes = [text_hash(f"text {i}") for i in range(40)]
    assert [i for i, h in enumerate(hashes) if holdout_draw(seed=5, content_hash=h, fraction=0.3)] == [
        0, 2, 7, 9, 13, 16, 30, 33, 34, 37,
    ]
    assert [i for i, h in enumerate(hashes) if _share_draw(seed=5, content_hash=h, share=0.3)] == [
        19, 21, 25, 28, 30,
    ]
    assert [i for i in range(40) if _audit_draw(seed=5, document_id=i, share=0.3)] == [4, 5, 10, 17, 33, 34, 36, 39]
    # Salted apart: the same text is drawn independently for the holdout and the overlap share.
    h = "a" * 64
    assert holdout_draw(seed=11, content_hash=h, fraction=0.5) != _share_draw(seed=11, content_hash=h, share=0.5)
