"""The `he-learned` backend: H&E nucleus segmentation learnt from virtual H&E and MxIF masks.

Training pairs are the project's own: a slide's virtual H&E (storage/vhe_store.py) and its
nucleus mask segmented on the nuclear stain (storage/mask_store.py) lie on one grid, so every
MxIF nucleus is a free instance label for the H&E. The network (pipelines/segment/he_unet.py)
learns at one pixel size (`mpp`, 0.5 µm/px by default) from random crops cut at a random scale
around it and re-stained towards real H&E (pipelines/segment/he_augment.py).

Inference takes an RGB window at any pixel size: it is resampled to the network's pixel size,
the foreground and core maps are resampled back to the window's grid, and nuclei
are cut there (so labels lie on the slide's own grid). Windows are tiled and stitched as for
the MxIF backends (pipelines/segment/he_tiling.py).

One module per part: name and training settings (`params`), pairs and crops (`crops`), the
trained model (`model`), training (`train`) and the segmenter with the registry's `build`
(`segmenter`).
"""

from pipelines.segment.he_learned.crops import (
    ArrayWindows,
    CropSampler,
    HePair,
    Windows,
    resize_labels,
    resize_rgb,
)
from pipelines.segment.he_learned.model import HeModel
from pipelines.segment.he_learned.params import (
    NAME,
    PROFILES,
    TRAIN_HOW,
    HeTrainParams,
    he_train_profile,
)
from pipelines.segment.he_learned.segmenter import BUILD_SETTINGS, HeLearnedSegmenter, build
from pipelines.segment.he_learned.train import HeTrainLog, segmentation_loss, train_he_segmenter

__all__ = [
    "BUILD_SETTINGS",
    "NAME",
    "PROFILES",
    "TRAIN_HOW",
    "ArrayWindows",
    "CropSampler",
    "HeLearnedSegmenter",
    "HeModel",
    "HePair",
    "HeTrainLog",
    "HeTrainParams",
    "Windows",
    "build",
    "he_train_profile",
    "resize_labels",
    "resize_rgb",
    "segmentation_loss",
    "train_he_segmenter",
]
