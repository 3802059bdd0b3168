"""`ganforge export`: the generator as ONNX, TorchScript, or a shareable model folder."""

from __future__ import annotations

import argparse

from ganforge.cli.common import positive_int, say

EXAMPLES = """\
examples:
  ganforge export runs/demo-001 --out demo.onnx            # ONNX, checked in onnxruntime
  ganforge export runs/demo-001 --out demo.pt              # TorchScript (torch.jit.load)
  ganforge export runs/demo-001 --format folder --out demo-model
  ganforge sample demo-model --count 16 --out samples.png  # the folder loads offline

ONNX needs the export extra: pip install 'ganforge[export]'. See docs/export.md.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a generator: ONNX, TorchScript or a model folder",
        description="Export the generator of a run (EMA weights when kept). "
        "ONNX and TorchScript files are checked against PyTorch on the "
        "same latents and written only if they agree.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "source", help="a run folder, model folder, generator .safetensors or checkpoint .pt"
    )
    p.add_argument(
        "--out",
        "-o",
        required=True,
        help="the file (.onnx, .pt) or, for --format folder, the folder to write",
    )
    p.add_argument(
        "--format",
        "-f",
        default="auto",
        choices=("auto", "onnx", "torchscript", "folder"),
        help="auto (default): by --out's name (.onnx, .pt, no suffix: folder)",
    )
    p.add_argument(
        "--opset",
        type=positive_int,
        default=None,
        help="ONNX opset version (default: the exporter's own)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ganforge.export import export

    result = export(args.source, args.out, args.format, args.opset)
    if result.max_abs_diff is not None:
        say(
            f"checked: largest difference from PyTorch {result.max_abs_diff:.1e} on [-1, 1] images "
            f"(tolerance {result.tolerance:.0e})"
        )
    say(f"wrote {result.format} export to {result.path}")
    return 0
