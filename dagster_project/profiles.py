"""Run configuration per profile: `demo` is (nearly) every config's default; `paper` is one
option away."""

from __future__ import annotations

# Sets the classifier's default training profile (pipelines/train/profiles.py).
PROFILE_ENV = "NUCLEUS_SUBTYPING_TRAIN_PROFILE"

PAPER_RUN_CONFIG: dict = {
    "ops": {
        # §2.4: 20,000 steps at batch 256 per fold (pipelines/train/profiles.py "paper").
        "classifier": {"config": {"profile": "paper"}},
        # Full-size CycleGAN (ngf 64, 9 residual blocks, 224 px crops, 100k steps).
        "cyclegan_model": {"config": {"profile": "paper"}},
        # he-learned H&E nucleus segmenter: wider U-Net, 256 px crops, 20k steps (GPU).
        "he_nucleus_model": {"config": {"profile": "paper"}},
    }
}


# Inference keeps its default (a cohort slide by the fold that held its patient out: one model
# pass per nucleus, and a test prediction). Slides infer side by side (up to --workers runs),
# so each takes one torch thread.
DEMO_RUN_CONFIG: dict = {"ops": {"nucleus_inference": {"config": {"cpu_threads": 1}}}}


# Left out of the zero-config demo (`nucleus-subtyping demo --only he_nucleus_model` still runs
# it; the paper profile keeps it): he-learned's demo training alone costs about half an hour on
# a busy 2-core CPU (about 5 s a step, 400 steps), over the whole demo's 10-minute budget.
NOT_IN_DEMO: tuple[str, ...] = ("he_nucleus_model",)


def run_config_for(profile: str) -> dict:
    if profile == "demo":
        return DEMO_RUN_CONFIG
    if profile == "paper":
        return PAPER_RUN_CONFIG
    raise ValueError(f"Unknown profile {profile!r}; choose demo or paper.")
