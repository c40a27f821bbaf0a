import numpy as np
import pytest

from bdl import BDLError
from bdl.pseudo import ClasswiseMedian, apply_thresholds


def test_fixed_threshold_keeps_exactly_pixels_at_or_above():
    pred = np.array([[0, 1, 2, 3]], dtype=np.uint8)
    prob = np.array([[0.9, 0.89999, 0.95, 0.2]], dtype=np.float32)
    out = apply_thresholds(pred, prob, np.full(19, 0.9, dtype=np.float32))
    assert out.tolist() == [[0, 255, 2, 255]]


def test_classwise_thresholds_are_exact_medians_capped():
    pred = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2], dtype=np.uint8)
    prob = np.array([0.2, 0.5, 0.4, 0.3, 0.6, 0.7, 0.35, 0.95, 0.99], dtype=np.float16)
    cm = ClasswiseMedian(19, cap=0.9)
    cm.add(pred, prob)
    t = cm.thresholds()
    assert t[0] == np.median(prob[:3].astype(np.float64))
    assert t[1] == np.median(prob[3:7].astype(np.float64))  # even count: mean of the middle two
    assert t[2] == pytest.approx(0.9)  # the median 0.97 is capped
    assert t[5] == pytest.approx(0.9)  # never predicted: the cap


@pytest.mark.parametrize("seed", range(5))
def test_classwise_matches_numpy_on_random_streams(seed):
    rng = np.random.default_rng(seed)
    chunks = [(rng.integers(0, 4, 500).astype(np.uint8), rng.beta(5, 2, 500).astype(np.float16)) for _ in range(6)]
    cm = ClasswiseMedian(4, cap=0.97)
    for p, q in chunks:
        cm.add(p, q)
    pred = np.concatenate([c[0] for c in chunks])
    prob = np.concatenate([c[1] for c in chunks]).astype(np.float64)
    for c in range(4):
        assert cm.thresholds()[c] == pytest.approx(min(np.median(prob[pred == c]), 0.97), abs=1e-12)


def test_classwise_extremes_floor_one_and_single_pixel():
    cm = ClasswiseMedian(3, cap=1.0)
    cm.add(np.array([0, 0, 1], np.uint8), np.array([1 / 32, 1.0, 0.0625], np.float16))
    assert cm.thresholds().tolist() == [(1 / 32 + 1) / 2, 0.0625, 1.0]


def test_histogram_floor_is_below_any_max_probability():
    # a max softmax probability over C classes is >= 1/C; the histogram starts at 1/32
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 0.01, (32, 1000))  # near-uniform: the max is barely above 1/32
    p = np.exp(logits) / np.exp(logits).sum(0)
    prob = p.max(0).astype(np.float16)
    pred = np.zeros(1000, np.uint8)
    cm = ClasswiseMedian(32, cap=1.0)
    cm.add(pred, prob)
    assert cm.thresholds()[0] == np.median(prob.astype(np.float64))
    with pytest.raises(ValueError, match="33 classes"):
        ClasswiseMedian(33, cap=1.0)


@pytest.mark.parametrize("cap", [0.9, 1.0])
def test_kept_counts_from_histograms_equal_applied_labels(cap):
    rng = np.random.default_rng(3)
    pred = rng.integers(0, 5, 4000).astype(np.uint8)
    prob = np.concatenate([rng.beta(6, 1, 3990), np.ones(10)]).astype(np.float16)
    cm = ClasswiseMedian(19, cap=cap)
    cm.add(pred, prob)
    for thresholds in (cm.thresholds(), np.full(19, cap), np.linspace(0.5, 1.0, 19)):
        labels = apply_thresholds(pred, prob, thresholds.astype(np.float16))
        assert cm.kept(thresholds).tolist() == np.bincount(labels[labels != 255], minlength=19).tolist()
    assert cm.predicted().tolist() == np.bincount(pred, minlength=19).tolist()


def test_a_nan_probability_or_an_unknown_class_is_refused_not_counted():
    cm = ClasswiseMedian(19, cap=0.9)
    with pytest.raises(BDLError, match="NaN probabilities: its weights diverged"):  # one line for the user
        cm.add(np.array([0, 1], np.uint8), np.array([0.5, -np.nan], np.float16))
    with pytest.raises(ValueError, match="got patterns 0x1c19-0x3800"):  # below the floor: not a max probability
        cm.add(np.array([0, 1], np.uint8), np.array([0.5, 0.004], np.float16))
    with pytest.raises(ValueError, match="below 19; got 19"):
        cm.add(np.array([0, 19], np.uint8), np.array([0.5, 0.5], np.float16))
    with pytest.raises(TypeError, match="float16"):
        cm.add(np.array([0], np.uint8), np.array([0.5], np.float32))
    assert cm.predicted().sum() == 0


def test_labels_from_the_scratch_apply_the_float16_thresholds(tmp_path):
    """A classwise pass's second pass: each frame's label is apply_thresholds of its argmax and probability, in
    runs of frames, and the set holds the label alone."""
    import h5py

    from bdl.artifacts import H5Writer, check_set, set_attrs
    from bdl.loops.inference import labels_from_scratch, scratch_arrays

    rng = np.random.default_rng(3)
    pred = rng.integers(0, 19, (7, 3, 4), dtype=np.uint8)
    prob = rng.uniform(0.05, 1, (7, 3, 4)).astype(np.float16)
    thresholds = rng.uniform(0.3, 0.9, 19)
    with H5Writer(tmp_path / "scratch.h5", 7, scratch_arrays((3, 4))) as out:
        out.write(0, list("abcdefg"), pred=pred, prob=prob)
    labels_from_scratch(tmp_path / "scratch.h5", tmp_path / "p.h5", thresholds,
                        set_attrs("pseudo") | {"thresholds": thresholds}, (3, 4), rows=3)
    check_set(tmp_path / "p.h5", "pseudo")
    with h5py.File(tmp_path / "p.h5") as f:
        assert sorted(f) == ["label", "names"] and list(f["names"].asstr()[:]) == list("abcdefg")
        assert np.array_equal(f["label"][:], apply_thresholds(pred, prob, thresholds.astype(np.float16)))
