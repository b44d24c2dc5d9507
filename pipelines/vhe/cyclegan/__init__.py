"""CycleGAN virtual H&E: all MxIF stains -> RGB H&E, learned from unpaired real H&E tiles.

model.py (networks), optics.py (fixed colour projections), data.py (samplers, normalisation),
train.py (losses, one step, the loop), fit.py (a training run and its checkpoint payload),
infer.py (blended whole-slide inference and the `cyclegan` backend, `load_backend`).
"""
