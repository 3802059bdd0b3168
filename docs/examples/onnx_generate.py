"""Generate images from a ganforge ONNX export with only numpy, onnxruntime and Pillow.

    ganforge export runs/demo-001 --out demo.onnx        # where ganforge is installed
    python onnx_generate.py demo.onnx --count 16 --out onnx-samples.png   # anywhere else

The ONNX file takes latents ``z`` [N, latent_dim] and returns ``images`` [N, C, H, W] in
[-1, 1]; a conditional generator (metadata ``num_classes`` > 0) also takes ``labels`` [N],
the class of each image (``--class``, a number or one of the metadata's ``class_names``; by
default the classes in turn). Its metadata (key
``ganforge``) says how the latents were drawn in training: normal with a standard
deviation, or uniform in [-1, 1]. numpy's random numbers are not
PyTorch's, so seed 0 here gives other images than ``ganforge sample --seed 0``; they come
from the same generator and the same noise law.
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import onnxruntime
from PIL import Image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="the .onnx file written by ganforge export")
    parser.add_argument("--count", type=int, default=16, help="number of images")
    parser.add_argument("--seed", type=int, default=0, help="numpy noise seed")
    parser.add_argument("--out", default="onnx-samples.png", help="grid PNG to write")
    parser.add_argument(
        "--class", dest="label", default=None, help="conditional only: a number or a class name"
    )
    args = parser.parse_args()

    session = onnxruntime.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    meta = json.loads(session.get_modelmeta().custom_metadata_map["ganforge"])
    rng = np.random.default_rng(args.seed)
    shape = (args.count, meta["latent_dim"])
    if meta["noise"] == "uniform":
        z = rng.uniform(-1.0, 1.0, shape)
    else:
        z = rng.standard_normal(shape) * meta["noise_std"]
    inputs = {"z": z.astype(np.float32)}
    classes = meta.get("num_classes", 0)
    if classes:
        names = meta.get("class_names", [])  # label i is names[i] when the data named them
        if args.label is None:
            labels = np.arange(args.count) % classes
        else:
            if args.label in names:
                label = names.index(args.label)
            elif args.label.isdigit() and int(args.label) < classes:
                label = int(args.label)
            else:
                parser.error(f"--class {args.label}: not one of 0-{classes - 1} {names}")
            labels = np.full(args.count, label)
        inputs["labels"] = np.asarray(labels, dtype=np.int64)
    (images,) = session.run(["images"], inputs)  # [N, C, H, W] in [-1, 1]

    pixels = np.clip(np.rint((images + 1.0) * 127.5), 0, 255).astype(np.uint8)
    n, c, h, w = pixels.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.zeros((rows * h, cols * w, c), dtype=np.uint8)
    for i, image in enumerate(pixels):
        r, k = divmod(i, cols)
        grid[r * h : (r + 1) * h, k * w : (k + 1) * w] = image.transpose(1, 2, 0)
    picture = Image.fromarray(grid[:, :, 0] if c == 1 else grid)
    picture.save(args.out)
    print(f"wrote {n} images of {c}x{h}x{w} from {meta['arch']} to {args.out}")


if __name__ == "__main__":
    main()
