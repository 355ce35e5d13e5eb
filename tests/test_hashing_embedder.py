import numpy as np

from pipelines.lib.hashing_embedder import embed_text, embed_texts


def test_vectors_are_deterministic_unit_and_sized():
    a = embed_text("tar: archiving utility", 384)
    assert a.shape == (384,) and a.dtype == np.float32
    assert np.isclose(np.linalg.norm(a), 1.0, atol=1e-6)
    assert np.array_equal(a, embed_text("tar: archiving utility", 384))
    assert embed_texts([], 64).shape == (0, 64)


def test_related_texts_are_closer_than_unrelated_ones():
    cos = lambda x, y: float(embed_text(x, 512) @ embed_text(y, 512))  # noqa: E731
    assert cos("extract a gzipped tar archive", "extract files from a tar archive") > cos(
        "extract a gzipped tar archive", "list running docker containers"
    )
    # Japanese has no spaces: character n-grams must still carry the similarity.
    assert cos("圧縮されたアーカイブを展開します", "アーカイブを展開する") > cos(
        "圧縮されたアーカイブを展開します", "メトロノームでテンポを上げる"
    )


def test_text_without_features_still_gets_a_unit_vector():
    v = embed_text("!", 16)
    assert np.isclose(np.linalg.norm(v), 1.0)
