"""Take a trained generator out of Python: ONNX, TorchScript, and a shareable model folder.

* ONNX (:func:`export_onnx`): input ``z`` float32 [N, latent_dim] (and, for a conditional
  generator, ``labels`` int64 [N], the class of each image), output ``images``
  float32 [N, C, H, W] in [-1, 1], any batch size. The file carries the noise law in its
  metadata (``ganforge`` key), so a program with only onnxruntime and numpy can draw latents
  (docs/examples/onnx_generate.py). Every export is run in onnxruntime on the same latents
  as PyTorch, and kept only when they agree within :data:`TOLERANCE`.
* TorchScript (:func:`export_torchscript`): the traced generator, loadable with
  ``torch.jit.load`` and no ganforge; checked against PyTorch the same way.
* Model folder (:func:`export_folder`), in the Hugging Face layout: ``model.safetensors``
  (weights and ganforge metadata), ``config.json``, ``README.md`` (the model card: data and
  its terms, recipe and command, metrics with their floors, intended use) and
  ``samples.png``. ``ganforge sample DIR`` and ``ganforge.load_generator(DIR)`` read it
  with no network and no training code beyond ganforge itself.

Each file is written to a temporary name and renamed into place only after its check, so
a failed export never leaves a file that looks finished.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import os
import shlex
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from ganforge.artefacts.files import _UMASK, write_text
from ganforge.checkpoint import GeneratorInfo, export_generator
from ganforge.conditional import num_classes_of
from ganforge.config_migration import migrate_config
from ganforge.errors import ConfigError, GanforgeError, first_line

# Largest |ONNX - PyTorch| accepted on the [-1, 1] image scale. One uint8 grey level is
# 2/255 = 7.8e-3, so at 1e-4 the two give the same 8-bit image except where a value sits
# within 1e-4 of a rounding boundary. Measured on CPU: below 1e-6 for every architecture.
TOLERANCE = 1e-4
# latents compared between runtimes: seeds 0-7, batch of 8
CHECK_SEEDS = tuple(range(8))
FORMATS = ("onnx", "torchscript", "folder")
EXTRA_HINT = "pip install 'ganforge[export]'"


@dataclass
class ExportResult:
    """Where the export went and how closely it reproduces PyTorch (None: not checked)."""

    path: Path
    format: str
    max_abs_diff: float | None
    tolerance: float = TOLERANCE


# a conditional generator's ONNX file takes both
INPUT_NAMES = ("z", "labels")


def infer_format(out: str | Path, given: str = "auto") -> str:
    """--format, or the one --out's name implies: .onnx, .pt/.ts (TorchScript), else a folder."""
    if given != "auto":
        if given not in FORMATS:
            raise ConfigError(
                f"unknown export format {given!r}; choose one of: {', '.join(FORMATS)}"
            )
        return given
    suffix = Path(out).suffix.lower()
    if suffix == ".onnx":
        return "onnx"
    if suffix in (".pt", ".ts", ".torchscript"):
        return "torchscript"
    if suffix == "":
        return "folder"
    raise ConfigError(
        f"cannot tell the format from --out {out}; name it .onnx or .pt, "
        "or give --format onnx|torchscript|folder"
    )


def export(
    source: str | Path, out: str | Path, format: str = "auto", opset: int | None = None
) -> ExportResult:
    """Export the generator of a run folder, generator file, checkpoint or model folder."""
    from ganforge.generate import load_generator

    kind = infer_format(out, format)
    if kind == "onnx":
        _require_onnx()
    generator, info = load_generator(source, "cpu")
    if kind == "onnx":
        return export_onnx(generator, info, out, opset)
    if kind == "torchscript":
        return export_torchscript(generator, info, out)
    return export_folder(source, generator, info, out)


# ---- ONNX ------------------------------------------------------------------------------


def _require_onnx() -> None:
    """Refuse early, in one line, when the export extra is missing."""
    missing = [name for name in ("onnx", "onnxscript") if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(
            f"ONNX export needs {' and '.join(missing)} (the export extra): {EXTRA_HINT}"
        )


def onnx_metadata(info: GeneratorInfo) -> dict[str, str]:
    """What a program needs to use the ONNX file without ganforge: how to draw z, what comes out."""
    description = {
        "latent_dim": info.latent_dim,
        # >0: a "labels" input too
        "num_classes": int(info.options.get("num_classes", 0) or 0),
        # label i is class_names[i] (may be empty)
        "class_names": list(info.class_names),
        "noise": info.noise,
        "noise_std": info.noise_std,
        "image_shape": list(info.image_shape),
        "output_range": [-1.0, 1.0],
        "arch": info.arch,
        "dataset": info.dataset,
        "step": info.step,
    }
    return {"ganforge": json.dumps(description)}


def export_onnx(
    generator: nn.Module, info: GeneratorInfo, out: str | Path, opset: int | None = None
) -> ExportResult:
    """Write the generator as ONNX with a free batch size, then check it in onnxruntime."""
    _require_onnx()
    import onnx

    out = Path(out)
    example = _example_inputs(generator, info)
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    names = list(INPUT_NAMES[: len(example)])
    with _quiet(), _temporary(out) as tmp:
        try:
            program = torch.onnx.export(
                generator,
                example,
                input_names=names,
                output_names=["images"],
                dynamic_shapes={name: {0: batch} for name in names},
                opset_version=opset,
                dynamo=True,
                verbose=False,
            )
        # the exporter raises many types; its first line says which op
        except Exception as exc:
            raise GanforgeError(
                f"ONNX export of {info.arch} failed ({first_line(exc)}); try --format torchscript"
            ) from None
        program.save(str(tmp))
        model = onnx.load(str(tmp))
        for key, value in onnx_metadata(info).items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(model, str(tmp))
        diff = check_onnx(tmp, generator, info)
        os.replace(tmp, out)
    return ExportResult(out, "onnx", diff)


def check_onnx(path: str | Path, generator: nn.Module, info: GeneratorInfo) -> float | None:
    """Largest |onnxruntime - PyTorch| over seeds 0-7; GanforgeError above TOLERANCE.
    None when onnxruntime is not installed (the file is then written unchecked)."""
    if importlib.util.find_spec("onnxruntime") is None:
        warnings.warn(
            f"onnxruntime is not installed, so the ONNX file was not checked; {EXTRA_HINT}",
            stacklevel=2,
        )
        return None
    import onnxruntime

    inputs = _check_inputs(generator, info)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {name: x.numpy() for name, x in zip(INPUT_NAMES, inputs)})[0]
    return _compare(got, generator, inputs, "ONNX")


# ---- TorchScript -----------------------------------------------------------------------


def export_torchscript(generator: nn.Module, info: GeneratorInfo, out: str | Path) -> ExportResult:
    """Trace the generator and save it with its description as an extra file (ganforge.json)."""
    out = Path(out)
    with _quiet(), _temporary(out) as tmp:
        with torch.no_grad():
            traced = torch.jit.trace(generator, _example_inputs(generator, info), check_trace=False)
        extra = {"ganforge.json": onnx_metadata(info)["ganforge"]}
        torch.jit.save(traced, str(tmp), _extra_files=extra)
        loaded = torch.jit.load(str(tmp), map_location="cpu")
        inputs = _check_inputs(generator, info)
        with torch.no_grad():
            diff = _compare(loaded(*inputs).numpy(), generator, inputs, "TorchScript")
        os.replace(tmp, out)
    return ExportResult(out, "torchscript", diff)


# ---- shared helpers --------------------------------------------------------------------


def _example_inputs(generator: nn.Module, info: GeneratorInfo) -> tuple[torch.Tensor, ...]:
    """(z,) or, for a conditional generator, (z, labels): a batch of 2, since a batch of 1
    would be baked into the exported graph."""
    z = torch.zeros(2, info.latent_dim)
    return (z, torch.zeros(2, dtype=torch.long)) if num_classes_of(generator) else (z,)


def _check_inputs(generator: nn.Module, info: GeneratorInfo) -> tuple[torch.Tensor, ...]:
    """The latents of seeds 0-7 and, for a conditional generator, classes 0, 1, 2, ... in turn."""
    from ganforge.latent import seed_latents

    z = seed_latents(info, list(CHECK_SEEDS))
    classes = num_classes_of(generator)
    return (z, torch.arange(len(z)) % classes) if classes else (z,)


def _compare(
    got: np.ndarray, generator: nn.Module, inputs: tuple[torch.Tensor, ...], what: str
) -> float:
    with torch.no_grad():
        want = generator(*inputs).numpy()
    if got.shape != want.shape:
        raise GanforgeError(
            f"the {what} file makes {got.shape} from {tuple(inputs[0].shape)} latents, "
            f"PyTorch {want.shape}; the export is wrong and was not written"
        )
    diff = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64))))
    # also catches NaN
    if not diff <= TOLERANCE:
        raise GanforgeError(
            f"the {what} file differs from PyTorch by {diff:.2e} (more than "
            f"{TOLERANCE:.0e}) on the same latents; it was not written"
        )
    return diff


@contextlib.contextmanager
def _temporary(out: Path) -> Iterator[Path]:
    """A temporary path beside `out`, removed unless the block renamed it into place."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    except OSError as exc:
        raise ConfigError(
            f"cannot write {out}: {exc.strerror or exc}; choose another --out"
        ) from None
    os.close(fd)
    tmp = Path(name)
    # mkstemp makes 0600; an export gets ordinary permissions
    os.chmod(tmp, 0o666 & ~_UMASK)
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Hide the exporters' progress lines and deprecation notes: the CLI reports the result."""
    names = ("torch.onnx", "torch.export", "torch._dynamo", "torch.fx", "onnxscript")
    levels = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


# ---- model folder (Hugging Face layout) --------------------------------------------------

# What ganforge knows of each data source's terms. Family = the dataset name before "/".
DATA_TERMS: dict[str, dict[str, Any]] = {
    "mnist": {
        "name": "MNIST handwritten digits (Y. LeCun, C. Cortes, C. J. C. Burges)",
        "terms": "Creative Commons Attribution-Share Alike 3.0 (CC BY-SA 3.0), as stated with the "
        "copy ganforge reads; credit the authors (http://yann.lecun.com/exdb/mnist/).",
        "hub": "ylecun/mnist",
        "medical": False,
    },
    "fashion-mnist": {
        "name": "Fashion-MNIST (Zalando Research)",
        "terms": "MIT licence; cite H. Xiao, K. Rasul, R. Vollgraf, arXiv:1708.07747 (2017).",
        "hub": "zalando-datasets/fashion_mnist",
        "medical": False,
    },
    "brain-mri": {
        "name": "Brain MRI slices (OASIS-1 keras_png_slices, or the Kaggle \"Alzheimer's Dataset "
        '(4 class of Images)", S. Dubey, 2020)',
        "terms": "OASIS-1 data are used under the OASIS Data Use Agreement "
        "(https://sites.wustl.edu/oasisbrains/); cite D. S. Marcus et al., J. Cognitive "
        "Neuroscience 19(9):1498-1507 (2007). The Kaggle set's licence is unverified: "
        "check its page before redistributing; if it is OASIS-derived, the OASIS terms "
        "apply too.",
        "hub": None,
        "medical": True,
    },
    "nifti": {
        "name": "NIfTI volumes supplied by the user",
        "terms": "set by the owner of the volumes; ganforge does not know them. State them here "
        "before sharing this model.",
        "hub": None,
        "medical": True,
    },
    "folder": {
        "name": "a folder of images supplied by the user",
        "terms": "set by the owner of the images; ganforge does not know them. State them here "
        "before sharing this model.",
        "hub": None,
        "medical": None,
    },
}
MNI152_TERMS = (
    "The MNI152 ICBM 2009 template: Copyright (C) 1993-2004 Louis Collins, "
    "McConnell Brain Imaging Centre, Montreal Neurological Institute, McGill "
    "University; keep this notice with any copy. Cite V. S. Fonov et al., "
    "NeuroImage 47 Suppl. 1 (2009) S102."
)
# where and on what it ran, not the recipe
CARD_EXCLUDED = ("out_dir", "run_name", "execution.device")


def export_folder(
    source: str | Path, generator: nn.Module, info: GeneratorInfo, out: str | Path
) -> ExportResult:
    """Write model.safetensors, config.json, README.md and samples.png into `out`."""
    from ganforge.artefacts.images import save_grid
    from ganforge.latent import images_for_seeds

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder name for --format folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "model.safetensors").is_file():
        raise ConfigError(
            f"--out {out} is a folder with other files in it; give a new or empty folder"
        )
    run = _run_record(source)
    try:
        out.mkdir(parents=True, exist_ok=True)
        save_grid(images_for_seeds(generator, info, list(range(64))), out / "samples.png", rows=8)
        write_text(out / "config.json", json.dumps(folder_config(info, run), indent=2) + "\n")
        write_text(out / "README.md", model_card(info, run, generator))
        # written last: its presence marks a finished folder
        export_generator(out / "model.safetensors", generator, info)
    except OSError as exc:
        raise ConfigError(
            f"cannot write {out}: {exc.strerror or exc}; choose another --out"
        ) from None
    return ExportResult(out, "folder", None)


def folder_config(info: GeneratorInfo, run: dict[str, Any]) -> dict[str, Any]:
    """config.json: the generator's description, and the full training config when known."""
    from ganforge.checkpoint import GENERATOR_FORMAT
    from ganforge.version import __version__

    return {
        "library_name": "ganforge",
        "ganforge_version": __version__,
        "format": GENERATOR_FORMAT,
        "model_type": "ganforge-generator",
        "architecture": info.arch,
        "latent_dim": info.latent_dim,
        "noise": info.noise,
        "noise_std": info.noise_std,
        "image_shape": list(info.image_shape),
        "output_range": [-1.0, 1.0],
        "output_layout": "NCHW",
        "options": info.options,
        "dataset": info.dataset,
        "step": info.step,
        "training_config": run.get("config"),
    }


def _run_record(source: str | Path) -> dict[str, Any]:
    """config, summary and latest evaluation of the run that `source` belongs to ({} if none)."""
    path = Path(source)
    for folder in (path, path.parent, path.parent.parent):
        if not folder.is_dir():
            continue
        config = _read_json(folder / "config.json")
        # a model folder
        if isinstance(config, dict) and config.get("library_name") == "ganforge":
            return {"config": migrate_config(config.get("training_config")), "folder": folder}
        if isinstance(config, dict) and "model" in config:
            evals = sorted(folder.glob("eval-*.json"), key=lambda p: p.stat().st_mtime)
            return {
                "config": migrate_config(config),
                "summary": _read_json(folder / "summary.json"),
                "eval": _read_json(evals[-1]) if evals else None,
                "folder": folder,
            }
    return {}


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def data_terms(info: GeneratorInfo, config: dict[str, Any] | None) -> dict[str, Any]:
    """The terms entry for the data the generator was trained on (path-specific where known)."""
    data = (config or {}).get("data") or {}
    family = str(data.get("dataset") or info.dataset.split("/")[0] or "folder")
    terms = dict(DATA_TERMS.get(family, DATA_TERMS["folder"]))
    path = str(data.get("path") or "")
    if path:
        terms["name"] += f" ({Path(path).name})"
    if any(key in path.lower() for key in ("mni152", "icbm152", "icbm_152")):
        terms["terms"] = MNI152_TERMS
    if terms["medical"] is None and path.lower().endswith((".nii", ".nii.gz")):
        terms["medical"] = True
    return terms


def reproduce_command(config: dict[str, Any] | None) -> str | None:
    """`ganforge train --preset P --set k=v ...` for the settings that differ from the preset."""
    if not config or not config.get("preset"):
        return None
    from ganforge.presets import load_preset

    try:
        base = load_preset(config["preset"]).to_dict()
    except GanforgeError:
        return None
    words = ["ganforge", "train", "--preset", str(config["preset"])]
    for key, value in _flatten(config).items():
        if key in CARD_EXCLUDED or key == "description":
            continue
        if _flatten(base).get(key, object()) != value:
            shown = value if isinstance(value, str) else json.dumps(value)
            words += ["--set", f"{key}={shown}"]
    return " ".join(shlex.quote(word) for word in words)


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return flat


def model_card(info: GeneratorInfo, run: dict[str, Any], generator: nn.Module) -> str:
    """README.md: front matter for the Hub, then what a user needs to judge and use the model."""
    config = run.get("config") or {}
    terms = data_terms(info, config)
    name = Path(str(run.get("folder", "") or info.arch)).name
    params = sum(p.numel() for p in generator.parameters())
    c, h, w = info.image_shape
    noise = f"normal, std {info.noise_std:g}" if info.noise == "normal" else "uniform in [-1, 1]"
    front = [
        "---",
        "library_name: ganforge",
        "pipeline_tag: unconditional-image-generation",
        "tags:",
        "- gan",
        "- ganforge",
        f"- {info.arch}",
    ]
    if terms.get("medical"):
        front.append("- medical-imaging")
    if terms.get("hub"):
        front += ["datasets:", f"- {terms['hub']}"]
    front.append("---")
    lines = front + [
        "",
        f"# {name}: a {info.arch} generator trained with ganforge",
        "",
        "![64 samples, seeds 0-63](samples.png)",
        "",
    ]
    if terms.get("medical"):
        lines += [
            (
                "> **Not for clinical use.** These are synthetic images. They show no real "
                "patient and must not be used for diagnosis, treatment or any decision about "
                "a person."
            ),
            "",
        ]
    lines += [
        "## Model",
        "",
        f"- architecture: `{info.arch}`, options {json.dumps(info.options)}, "
        f"{params:,} generator parameters",
        f"- input: latent z of size {info.latent_dim}, {noise}",
        f"- output: {c}x{h}x{w} images (C x H x W) in [-1, 1]; 8-bit: (x + 1) * 127.5",
        f"- trained for {info.step} iterations on {info.dataset or 'unrecorded data'}",
        "",
        "## Use (offline)",
        "",
        "With ganforge installed; nothing is downloaded.",
        "",
        "```bash",
        "ganforge sample path/to/this/folder --count 64 --out samples.png",
        "ganforge sample path/to/this/folder --seeds 0-35 --out seeds/   # seed-0000.png ...",
        "```",
        "",
        "```python",
        "import ganforge",
        'generator, info = ganforge.load_generator("path/to/this/folder")',
        'images = ganforge.sample("path/to/this/folder", count=16)  # uint8 [16, H, W, C]',
        "```",
        "",
        "## Training data",
        "",
        f"- data: {terms['name']}",
        f"- licence / terms: {terms['terms']}",
    ]
    summary = run.get("summary") or {}
    if summary.get("images"):
        used = summary.get("dataset", info.dataset)
        lines.append(f"- images used: {summary['images']:,} ({used})")
    lines += [
        "",
        "The weights are derived from this data: its terms may limit how they can be "
        "shared. Choose a licence for the weights with that in mind before publishing.",
        "",
    ]
    lines += _recipe_section(config) + _metrics_section(run.get("eval")) + _use_section(terms)
    lines += [
        "## Files",
        "",
        "- `model.safetensors`: weights and ganforge metadata (no pickle; safe to open)",
        "- `config.json`: the architecture, latent law and the full training configuration",
        "- `samples.png`: seeds 0-63",
        "",
    ]
    return "\n".join(lines)


def _recipe_section(config: dict[str, Any]) -> list[str]:
    if not config:
        return [
            "## Recipe",
            "",
            "Not recorded: exported from a generator file without its run folder.",
            "",
        ]
    optim, steps = config.get("optim", {}), config.get("schedule", {})
    schedule = (
        f"{steps['epochs']} epochs"
        if steps.get("epochs") is not None
        else f"{steps.get('iterations')} iterations"
    )
    lines = ["## Recipe", ""]
    if config.get("preset"):
        lines.append(f"Preset `{config['preset']}`: {config.get('description', '').strip()}")
        lines.append("")
    lines += [
        f"- loss `{config.get('loss')}`, batch {steps.get('batch_size')}, {schedule}, "
        f"seed {config.get('seed')}",
        f"- Adam: lr G {optim.get('lr_g')}, lr D {optim.get('lr_d')}, betas "
        f"({optim.get('beta1')}, {optim.get('beta2')})",
    ]
    command = reproduce_command(config)
    if command:
        lines += ["", "Command that repeats this run:", "", "```bash", command, "```"]
    lines += ["", "The full configuration is `training_config` in config.json.", ""]
    return lines


def _metrics_section(record: dict[str, Any] | None) -> list[str]:
    if not record or not isinstance(record.get("metrics"), dict):
        return [
            "## Evaluation",
            "",
            "Not evaluated when exported. Measure it with "
            "`ganforge eval RUN` and export again to include the numbers.",
            "",
        ]
    floor = record.get("floor") or {}
    better = record.get("better") or {}
    lines = [
        "## Evaluation",
        "",
        f"{record.get('count')} generated images (seed {record.get('seed')}) against "
        f"{record.get('reference_count')} images of {record.get('reference')}; feature "
        f"network: {record.get('features')}. The real-vs-real floor is what two disjoint "
        "sets of real images score: the best a generator can be expected to reach.",
        "",
        "| metric | value | real vs real | better |",
        "|---|---|---|---|",
    ]
    for key, value in record["metrics"].items():
        lines.append(
            f"| {key} | {_number(value)} | {_number(floor.get(key))} | {better.get(key, '')} |"
        )
    return lines + [""]


def _number(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    return f"{value:.4f}" if abs(value) < 100 else f"{value:.1f}"


def _use_section(terms: dict[str, Any]) -> list[str]:
    lines = [
        "## Intended use",
        "",
        "Research and teaching: studying GAN training, benchmarking generative models, "
        "and making example images. The images are synthetic; the generator may also "
        "reproduce parts of its training images, so treat its output with the same care "
        "as the training data.",
    ]
    if terms.get("medical"):
        lines += [
            "",
            "**Not for clinical use.** Do not use it for diagnosis, treatment, screening "
            "or as a stand-in for patient data in any clinical system. Its images have not "
            "been validated by clinicians and can contain anatomy that does not exist.",
        ]
    elif terms.get("medical") is None:
        lines += [
            "",
            "If the training images are medical: **not for clinical use**; the images "
            "are synthetic and unvalidated.",
        ]
    return lines + [""]
