"""Class-balanced streaming from the patch store: uniform classes, exact rows, whole chunks,
determinism and resume."""

import numpy as np
import pytest

from pipelines.train.loader import (
    BalancedPatchLoader,
    LoaderParams,
    balanced_rows,
    dihedral,
    read_rows,
)
from storage.patch_chunks import PatchChunkReader
from tests.classifier_fixtures import make_store

# Strongly imbalanced: class 2 has 1500 patches, class 9 only 20.
SLIDES = {
    "s1": {2: 900, 5: 150, 9: 12},
    "s2": {2: 600, 5: 90, 9: 8, 11: 60},
}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("patches") / "patches.zarr", SLIDES)


@pytest.fixture
def sources(store):
    return [PatchChunkReader(store.slide(s)) for s in ("s1", "s2")]


def _take(loader: BalancedPatchLoader, n: int, start: int = 0):
    it = loader.batches(start)
    out = [next(it) for _ in range(n)]
    it.close()
    return out


def test_every_batch_draws_classes_uniformly_and_rows_match_the_store(store, sources) -> None:
    params = LoaderParams(batch_size=64, reservoir_rows=128, reuse=1.0, seed=5)
    with BalancedPatchLoader(sources, 14, params) as loader:
        batches = _take(loader, 60)
    assert list(loader.present) == [2, 5, 9, 11]
    labels = np.concatenate([b.labels for b in batches])
    counts = np.bincount(labels, minlength=14)[[2, 5, 9, 11]]
    expected = len(labels) / 4
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 16.3, counts  # chi-square, 3 dof, p = 0.001
    slides = [store.slide("s1"), store.slide("s2")]
    for b in batches[::7]:
        for img, lab, s, r in zip(b.images, b.labels, b.source, b.row, strict=True):
            assert slides[s].class_index[r] == lab
            assert np.array_equal(img, slides[s].read_rows(r, r + 1)[0])


def test_big_classes_stream_whole_chunks_and_cover_the_class(sources) -> None:
    params = LoaderParams(batch_size=64, reservoir_rows=128, reuse=1.0, seed=0)
    with BalancedPatchLoader(sources, 14, params) as loader:
        assert loader.steps_per_generation == 8  # 4 classes * 128 rows / 64 per batch
        batches = _take(loader, 8 * 40)
        stats = loader.stats
    samples = 64 * len(batches)
    assert stats.chunks_decoded < samples / 100  # far from one decode per sample
    big = np.concatenate([b.row[(b.labels == 2) & (b.source == 0)] for b in batches])
    assert len(np.unique(big)) > 0.9 * 900  # reservoirs rotate through the whole class
    small = np.concatenate([b.row[(b.labels == 9)] for b in batches])
    assert len(np.unique(small)) >= 12  # every row of a small class is resident


def test_batches_depend_only_on_seed_and_step(sources) -> None:
    params = LoaderParams(batch_size=32, reservoir_rows=64, reuse=1.0, seed=9, threads=2)
    with BalancedPatchLoader(sources, 14, params) as a:
        run = _take(a, 20)
    with BalancedPatchLoader(sources, 14, params) as b:
        resumed = _take(b, 7, start=13)  # crosses generation boundaries mid-way
    for x, y in zip(run[13:], resumed, strict=True):
        assert x.step == y.step
        assert np.array_equal(x.images, y.images) and np.array_equal(x.labels, y.labels)
    other = LoaderParams(batch_size=32, reservoir_rows=64, reuse=1.0, seed=10)
    with BalancedPatchLoader(sources, 14, other) as c:
        assert not np.array_equal(_take(c, 1)[0].labels, run[0].labels)


def test_augmentation_is_a_dihedral_transform_of_the_stored_patch(store, sources) -> None:
    params = LoaderParams(batch_size=32, reservoir_rows=64, augment=True, seed=1)
    with BalancedPatchLoader(sources, 14, params) as loader:
        batch = _take(loader, 1)[0]
    slides = [store.slide("s1"), store.slide("s2")]
    changed = 0
    for img, s, r in zip(batch.images, batch.source, batch.row, strict=True):
        original = slides[s].read_rows(r, r + 1)[0]
        variants = [dihedral(original[None], np.array([k]))[0] for k in range(8)]
        assert any(np.array_equal(img, v) for v in variants)
        changed += not np.array_equal(img, original)
    assert changed > 16


def test_dihedral_matches_numpy() -> None:
    x = np.arange(2 * 3 * 3 * 1).reshape(2, 3, 3, 1)
    out = dihedral(x, np.array([1, 6]))
    assert np.array_equal(out[0], np.rot90(x[0], 1))
    assert np.array_equal(out[1], np.rot90(x[1], 2)[:, ::-1])


def test_chunk_reader_fast_path_equals_zarr(store) -> None:
    slide = store.slide("s1")
    fast = PatchChunkReader(slide)
    assert fast.fast
    slow = PatchChunkReader(slide)
    slow._chunk_dir = None
    for k in range(fast.n_chunks):
        assert np.array_equal(fast.read_chunk(k), slow.read_chunk(k))
        a, b = fast.chunk_bounds(k)
        assert np.array_equal(fast.read_chunk(k), slide.read_rows(a, b))
    rows = np.array([1000, 3, 130, 3])
    assert np.array_equal(fast.read_rows(rows), np.stack([slide.read_rows(r, r + 1)[0]
                                                          for r in rows]))


def test_balanced_rows_is_a_fixed_per_class_subset(store, sources) -> None:
    s, r, lab = balanced_rows(sources, 14, per_class=50, seed=2)
    counts = dict(zip(*np.unique(lab, return_counts=True), strict=True))
    assert counts == {2: 50, 5: 50, 9: 20, 11: 50}
    again = balanced_rows(sources, 14, per_class=50, seed=2)
    assert all(np.array_equal(x, y) for x, y in zip((s, r, lab), again, strict=True))
    slides = [store.slide("s1"), store.slide("s2")]
    assert all(slides[a].class_index[b] == c for a, b, c in zip(s, r, lab, strict=True))
    images = read_rows(sources, s, r)
    assert np.array_equal(images[5], slides[s[5]].read_rows(r[5], r[5] + 1)[0])
