"""Build a stand-in for Mesmer's network, for tests and smoke checks without the real weights.

Same interface as deepcell's `MultiplexSegmentation` model: input (batch, 256, 256, 2) with the
nuclear stain first; four outputs semantic_0..3 = whole-cell inner distance (1), whole-cell
pixelwise (3: background, interior, border), nuclear inner distance (1), nuclear pixelwise (3).
Instead of learned features it computes, from the normalised nuclear stain x,
inner distance = a Gaussian blur of x (peaks at bright blob centres) and
pixelwise = softmax(4 - 8x, 8x - 4, 0) (interior where x > 0.5).
So bright, separated blobs come out as one nucleus each through deepcell's real pipeline.

Run with the Mesmer environment's Python:
    .mesmer-env/bin/python mesmer_env/standin_model.py OUT_PATH  (a folder: Keras SavedModel)
"""

from __future__ import annotations

import sys

import numpy as np

TILE_PX = 256


def build_model(sigma_px: float = 2.0):
    import tensorflow as tf

    image = tf.keras.Input(shape=(TILE_PX, TILE_PX, 2), name="input_0")
    pick = tf.keras.layers.Conv2D(1, 1, use_bias=False, name="nuclear_stain")
    nuclear = pick(image)
    radius = int(3 * sigma_px)
    blur = tf.keras.layers.Conv2D(1, 2 * radius + 1, padding="same", use_bias=False, name="blur")
    distance = blur(nuclear)
    logits = tf.keras.layers.Conv2D(3, 1, name="pixelwise_logits")
    pixelwise = tf.keras.layers.Softmax(axis=-1)(logits(nuclear))

    def head(tensor, name):
        return tf.keras.layers.Activation("linear", name=name)(tensor)

    model = tf.keras.Model(
        image,
        [head(distance, "semantic_0"), head(pixelwise, "semantic_1"),
         head(distance, "semantic_2"), head(pixelwise, "semantic_3")],
    )
    pick.set_weights([np.array([1.0, 0.0], dtype=np.float32).reshape(1, 1, 2, 1)])
    grid = np.arange(-radius, radius + 1, dtype=np.float32)
    kernel = np.exp(-(grid[:, None] ** 2 + grid[None, :] ** 2) / (2 * sigma_px**2))
    blur.set_weights([(kernel / kernel.sum()).reshape(2 * radius + 1, 2 * radius + 1, 1, 1)])
    logits.set_weights([
        np.array([-8.0, 8.0, 0.0], dtype=np.float32).reshape(1, 1, 1, 3),
        np.array([4.0, -4.0, 0.0], dtype=np.float32),
    ])
    return model


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    build_model().save(argv[1], include_optimizer=False)
    print(argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
