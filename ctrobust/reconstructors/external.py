"""Reconstructors ctrobust did not train: TorchScript, ONNX, a Python factory, a MONAI bundle.

Each declared model (``reconstructors:`` in the config, docs/external_reconstructors.md) is
loaded into a :class:`Reconstructor` of kind EXTERNAL and checked on one dummy batch of the
run's geometry before any work: output shape (B, 1, n, n), dtype float32, the run's device,
finite values, a plausible water value after the intensity conversion, and gradients that
reach the model's input (every attack needs them). A failed check is one line naming the
reconstructor. Nothing is executed that the config did not name: ONNX graphs are converted
to PyTorch modules by onnx2torch, and a MONAI bundle is read from ``configs/metadata.json``
(as JSON) and ``models/model.ts``; its expression configs are never evaluated.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import re
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ctrobust.config import ConfigError, ExternalReconstructorConfig
from ctrobust.physics.units import hu_to_relative, relative_to_hu

from .base import Geometry, MethodId, MethodKind, Provenance, Reconstructor, sha256_of

FORMAT_NAMES = {
    "torchscript": "TorchScript",
    "onnx": "ONNX",
    "python": "Python factory",
    "monai_bundle": "MONAI bundle",
}
INTENSITY_NAMES = {
    "relative_attenuation": "relative attenuation",
    "hu": "HU",
    "mu_per_mm": "mu in 1/mm",
}
BUNDLE_MODEL = Path("models") / "model.ts"
BUNDLE_METADATA = Path("configs") / "metadata.json"
#: Water must come back within this factor of 1 (relative attenuation) from the dummy disc.
WATER_TOLERANCE = 0.5
DUMMY_BATCH = 2
#: The newest ONNX opset whose operators onnx2torch 1.5 converts throughout.
ONNX2TORCH_OPSET = 17


def _refuse(spec: ExternalReconstructorConfig, reason: str) -> ConfigError:
    """The one-line error for a reconstructor that cannot be used."""
    return ConfigError(f"reconstructor '{spec.name}' ({spec.format} {spec.path}): {reason}")


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


# --- intensities ----------------------------------------------------------------------------


def to_model_units(x: Tensor, intensity: str, mu_water_per_mm: float) -> Tensor:
    """Relative attenuation (ctrobust's unit) -> the model's image unit."""
    if intensity == "hu":
        return relative_to_hu(x)
    if intensity == "mu_per_mm":
        return x * mu_water_per_mm
    return x


def from_model_units(x: Tensor, intensity: str, mu_water_per_mm: float) -> Tensor:
    """The model's image unit -> relative attenuation."""
    if intensity == "hu":
        return hu_to_relative(x)
    if intensity == "mu_per_mm":
        return x / mu_water_per_mm
    return x


# --- the reconstructor ----------------------------------------------------------------------


class ExternalReconstructor(Reconstructor):
    """A declared model as a sinogram -> image map, with units converted at the boundary.

    ``input: fbp`` feeds the model the FBP of the measured views (in the model's unit), so the
    same model can be rebuilt for another view count and then sees that count's FBP;
    ``input: sinogram`` feeds it ``y`` as ctrobust holds it (line integrals of relative
    attenuation in pixel lengths) and runs only at the configured geometry.
    """

    def __init__(
        self,
        operator,
        model: nn.Module,
        spec: ExternalReconstructorConfig,
        provenance: Provenance,
        mu_water_per_mm: float,
    ) -> None:
        super().__init__(
            MethodId(MethodKind.EXTERNAL, spec.name),
            f"{spec.name} (external, {FORMAT_NAMES[spec.format]})",
            operator,
            provenance,
        )
        self.model = model
        self.spec = spec
        self.mu_water_per_mm = mu_water_per_mm

    def model_input(self, y: Tensor) -> Tensor:
        """What the model receives for sinograms ``y``."""
        if self.spec.input == "sinogram":
            return y
        return to_model_units(self.operator.fbp(y), self.spec.intensity, self.mu_water_per_mm)

    def from_model(self, image: Tensor) -> Tensor:
        """The model's output in relative attenuation."""
        return from_model_units(image, self.spec.intensity, self.mu_water_per_mm)

    def forward(self, y: Tensor) -> Tensor:
        return self.from_model(self.model(self.model_input(y)))

    @property
    def fixed_geometry(self) -> bool:
        """A sinogram-input model knows only the configured number of views."""
        return self.spec.input == "sinogram"

    def for_operator(self, operator) -> ExternalReconstructor:
        if self.fixed_geometry:
            return super().for_operator(operator)
        return ExternalReconstructor(
            operator, self.model, self.spec, self.provenance, self.mu_water_per_mm
        )


# --- loaders, one per format ----------------------------------------------------------------


def model_file(spec: ExternalReconstructorConfig) -> Path:
    """The file whose SHA-256 identifies the model: the path itself, or a bundle's model.ts."""
    if spec.format != "monai_bundle":
        return spec.path
    path = spec.path / BUNDLE_MODEL
    if not path.is_file():
        raise _refuse(
            spec,
            f"the bundle has no {BUNDLE_MODEL} (export one with "
            "`python -m monai.bundle ckpt_export`)",
        )
    return path


def _load_torchscript(path: Path, spec: ExternalReconstructorConfig, device) -> nn.Module:
    try:
        return torch.jit.load(str(path), map_location=device)
    except Exception as error:  # torch.jit.load raises RuntimeError/ValueError variants
        raise _refuse(spec, f"not a TorchScript file ({_first_line(error)})") from None


@contextlib.contextmanager
def _torchvision_stand_in() -> Iterator[None]:
    """A torchvision whose ops refuse, in sys.modules for one import only.

    onnx2torch imports torchvision when it is imported, for its NMS and RoiAlign converters
    alone. PyPI's torchvision wheels are CUDA builds that do not load next to a CPU-only torch,
    so where torchvision does not import, this stand-in lets every other converter work; those
    two fail with a reason if a graph ever uses them (no reconstruction network does).
    """

    def unavailable(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("this ONNX operator needs torchvision, which does not load here")

    package, ops = types.ModuleType("torchvision"), types.ModuleType("torchvision.ops")
    ops.nms = ops.roi_align = ops.box_convert = unavailable  # type: ignore[attr-defined]
    package.ops = ops  # type: ignore[attr-defined]
    saved = {name: sys.modules.get(name) for name in ("torchvision", "torchvision.ops")}
    sys.modules.update({"torchvision": package, "torchvision.ops": ops})
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def _import_onnx2torch(spec: ExternalReconstructorConfig) -> types.ModuleType:
    try:
        return importlib.import_module("onnx2torch")
    except Exception as error:  # a broken torchvision raises RuntimeError
        first = error
    try:
        with _torchvision_stand_in():
            return importlib.import_module("onnx2torch")
    except Exception:
        raise _refuse(spec, f"onnx2torch does not import ({_first_line(first)})") from None


def supported_opset(model):
    """The ONNX model at an opset onnx2torch converts, down-converted by ONNX's own converter.

    onnx2torch 1.5 knows operators up to opset 17, while torch.onnx.export writes opset 20
    (Constant-19, Identity-19, ...). ONNX's version converter maps each operator to its
    older definition or fails; on failure the model is converted as it is, and onnx2torch
    then names the operator it lacks.
    """
    from onnx import version_converter

    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset <= ONNX2TORCH_OPSET:
        return model
    try:
        return version_converter.convert_version(model, ONNX2TORCH_OPSET)
    except Exception:  # the adapters raise RuntimeError or onnx's own errors
        return model


def _load_onnx(path: Path, spec: ExternalReconstructorConfig, device) -> nn.Module:
    import onnx

    try:
        graph = onnx.load(str(path))
        onnx.checker.check_model(graph)
    except Exception as error:  # onnx raises its own error types
        raise _refuse(spec, f"not a valid ONNX model ({_first_line(error)})") from None
    converter = _import_onnx2torch(spec)
    try:
        model = converter.convert(supported_opset(graph))
    except Exception as error:  # unsupported operators raise NotImplementedError
        raise _refuse(
            spec,
            "cannot be differentiated: onnx2torch could not convert it to PyTorch operations "
            f"({_first_line(error)})",
        ) from None
    return model.to(device)


def _factory(spec: ExternalReconstructorConfig) -> Callable[[], Any]:
    module_name, _, attr = str(spec.factory).partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # whatever the user's module raises
        raise _refuse(spec, f"factory module '{module_name}' ({_first_line(error)})") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise _refuse(spec, f"factory '{spec.factory}' is not a callable")
    return factory


def _weights(path: Path, spec: ExternalReconstructorConfig) -> dict[str, Tensor]:
    """A state dict from safetensors, or from a weights-only torch file (no pickled code)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch and safetensors raise various types
        raise _refuse(
            spec,
            f"weights are neither safetensors nor a weights-only state dict ({_first_line(error)})",
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise _refuse(spec, "weights file does not hold a state dict (names -> tensors)")
    return state


def _load_python(path: Path, spec: ExternalReconstructorConfig, device) -> nn.Module:
    model = _factory(spec)()
    if not isinstance(model, nn.Module):
        raise _refuse(spec, f"factory returned {type(model).__name__}, not a torch.nn.Module")
    try:
        model.load_state_dict(_weights(path, spec))
    except RuntimeError as error:
        raise _refuse(
            spec, f"weights do not fit the factory's model ({_first_line(error)})"
        ) from None
    return model.to(device)


def bundle_metadata(spec: ExternalReconstructorConfig) -> dict[str, Any]:
    """A bundle's ``configs/metadata.json``, read as plain JSON."""
    path = spec.path / BUNDLE_METADATA
    try:
        metadata = json.loads(path.read_text())
    except FileNotFoundError:
        raise _refuse(spec, f"the bundle has no {BUNDLE_METADATA}") from None
    except json.JSONDecodeError as error:
        raise _refuse(spec, f"{BUNDLE_METADATA} is not JSON ({error})") from None
    if not isinstance(metadata, dict):
        raise _refuse(spec, f"{BUNDLE_METADATA} is not a JSON object")
    return metadata


def _first_entry(section: Any) -> dict[str, Any]:
    if isinstance(section, dict) and section:
        entry = next(iter(section.values()))
        return entry if isinstance(entry, dict) else {}
    return {}


def _shape_fits(declared: Any, expected: tuple[int, int]) -> bool:
    """Whether a bundle's spatial_shape (ints, or MONAI's '16*n' multiples) admits ``expected``."""
    if not isinstance(declared, list) or len(declared) != len(expected):
        return True  # no usable declaration: the dummy batch decides
    for value, size in zip(declared, expected, strict=True):
        if isinstance(value, int) and value != size:
            return False
        multiple = re.fullmatch(r"\s*(\d+)\s*\*\s*n\s*", value) if isinstance(value, str) else None
        if multiple and size % int(multiple.group(1)):
            return False
    return True


def check_bundle_metadata(spec: ExternalReconstructorConfig, geometry) -> dict[str, Any]:
    """Refuse a bundle whose declared input or output contradicts the config and geometry."""
    metadata = bundle_metadata(spec)
    data_format = metadata.get("network_data_format", {})
    inputs = _first_entry(data_format.get("inputs"))
    outputs = _first_entry(data_format.get("outputs"))
    for what, entry in (("input", inputs), ("output", outputs)):
        channels = entry.get("num_channels")
        if channels is not None and channels != 1:
            raise _refuse(spec, f"metadata declares {channels} {what} channels; CT needs 1")
        dtype = entry.get("dtype")
        if dtype is not None and dtype != "float32":
            raise _refuse(spec, f"metadata declares {what} dtype {dtype}; ctrobust uses float32")
    expected = (
        (geometry.views, geometry.n_det) if spec.input == "sinogram" else (geometry.n, geometry.n)
    )
    if not _shape_fits(inputs.get("spatial_shape"), expected):
        raise _refuse(
            spec,
            f"metadata input spatial_shape {inputs.get('spatial_shape')} does not admit "
            f"{expected[0]} x {expected[1]} (the run's {spec.input} shape)",
        )
    if inputs.get("format") == "hounsfield" and spec.intensity != "hu":
        raise _refuse(
            spec,
            f"metadata says the input is in Hounsfield units but intensity is "
            f"'{spec.intensity}' (set intensity: hu)",
        )
    return metadata


def _load_bundle(path: Path, spec: ExternalReconstructorConfig, device) -> nn.Module:
    return _load_torchscript(path, spec, device)


LOADERS = {
    "torchscript": _load_torchscript,
    "onnx": _load_onnx,
    "python": _load_python,
    "monai_bundle": _load_bundle,
}


def _what(spec: ExternalReconstructorConfig, metadata: dict[str, Any] | None) -> str:
    source = FORMAT_NAMES[spec.format]
    if spec.format == "python":
        source += f" {spec.factory}"
    if metadata:
        name, version = metadata.get("name"), metadata.get("version")
        source += "".join(f" {v}" for v in (name and f"'{name}'", version and f"v{version}") if v)
    feeds = "the FBP image" if spec.input == "fbp" else "the sinogram"
    return (
        f"external model ({source}), not trained by ctrobust, on {feeds}; "
        f"images in {INTENSITY_NAMES[spec.intensity]}"
    )


# --- checks before any work -----------------------------------------------------------------


def _water_discs(op, batch: int) -> Tensor:
    """Discs of water (relative attenuation 1) in air, of slightly different radii."""
    n = op.n
    coords = (torch.arange(n, dtype=torch.float32, device=op.device) - (n - 1) / 2) / (n / 2)
    r = torch.sqrt(coords[None, :] ** 2 + coords[:, None] ** 2)
    radii = torch.linspace(0.7, 0.6, batch, device=op.device)
    return (r[None] <= radii[:, None, None]).float()[:, None]


def _same_device(actual: torch.device, wanted: torch.device) -> bool:
    """``cuda:0`` is the run's ``cuda``; an explicit index must match."""
    return actual.type == wanted.type and (wanted.index is None or actual.index == wanted.index)


def check_reconstructor(f: ExternalReconstructor, device: torch.device) -> None:
    """Run one dummy batch of the run's geometry through ``f``; refuse it with a reason.

    Checks: the model runs, returns a float32 (B, 1, n, n) tensor on ``device`` with finite
    values, turns a water disc into about water (1 +- 0.5 in relative attenuation, which
    catches a wrong ``intensity``), and passes a non-zero gradient back to its input.
    """
    with torch.enable_grad():  # callers may hold no_grad; the gradient check needs autograd
        _check_dummy_batch(f, device)


def _check_dummy_batch(f: ExternalReconstructor, device: torch.device) -> None:
    spec, op = f.spec, f.operator
    x = _water_discs(op, DUMMY_BATCH)
    with torch.no_grad():
        model_in = f.model_input(op.A(x)).detach()
    model_in.requires_grad_(True)
    try:
        raw = f.model(model_in)
    except Exception as error:  # whatever the model raises
        raise _refuse(
            spec,
            f"fails on a dummy batch of shape {tuple(model_in.shape)} ({_first_line(error)}); "
            "export it with a dynamic batch axis and the run's image size",
        ) from None
    expected = (DUMMY_BATCH, 1, op.n, op.n)
    if not isinstance(raw, Tensor):
        raise _refuse(spec, f"returns {type(raw).__name__}, expected a tensor {expected}")
    if tuple(raw.shape) != expected:
        raise _refuse(
            spec,
            f"returns shape {tuple(raw.shape)} for input {tuple(model_in.shape)}, "
            f"expected {expected}",
        )
    if raw.dtype != torch.float32:
        raise _refuse(spec, f"returns {raw.dtype}, expected torch.float32")
    if not _same_device(raw.device, torch.device(device)):
        raise _refuse(spec, f"returns a tensor on {raw.device}, expected the run's {device}")
    if not torch.isfinite(raw).all():
        raise _refuse(spec, "returns NaN or infinite values on a dummy batch")
    inside = f.from_model(raw.detach())[x.bool()].mean().item()
    if abs(inside - 1.0) > WATER_TOLERANCE:
        raise _refuse(
            spec,
            f"turns a water disc into {inside:.3g} (relative attenuation, water = 1) after "
            f"converting from intensity '{spec.intensity}': check intensity and input",
        )
    if not raw.requires_grad:
        raise _refuse(
            spec,
            "cannot be differentiated: its output carries no gradient (the model detaches "
            "or runs without autograd); the attacks need gradients",
        )
    direction = torch.randn(
        raw.shape, generator=torch.Generator().manual_seed(0), dtype=raw.dtype
    ).to(raw.device)
    (grad,) = torch.autograd.grad((raw * direction).sum(), model_in, allow_unused=True)
    if grad is None or not torch.isfinite(grad).all() or not grad.abs().sum() > 0:
        raise _refuse(
            spec,
            "cannot be differentiated: the gradient with respect to its input is "
            f"{'absent' if grad is None else 'zero or not finite'} (rounding, argmax or "
            "integer casts in the graph?); the attacks need gradients",
        )


def load_external(
    spec: ExternalReconstructorConfig, operator, device: torch.device, mu_water_per_mm: float
) -> ExternalReconstructor:
    """Load a declared model at the geometry of ``operator`` and check it (see module doc)."""
    path = model_file(spec)
    metadata = (
        check_bundle_metadata(spec, Geometry.of(operator))
        if spec.format == "monai_bundle"
        else None
    )
    model = LOADERS[spec.format](path, spec, device).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    provenance = Provenance(_what(spec, metadata), weights=str(path), sha256=sha256_of(path))
    f = ExternalReconstructor(operator, model, spec, provenance, mu_water_per_mm)
    check_reconstructor(f, device)
    return f.eval()


def declared_files(specs: list[ExternalReconstructorConfig]) -> list[dict[str, str]]:
    """Name, format, path and SHA-256 of each declared model, for run.json."""
    return [
        {
            "name": spec.name,
            "format": spec.format,
            "path": str(spec.path.resolve()),
            "file": str(model_file(spec).resolve()),
            "sha256": sha256_of(model_file(spec)),
        }
        for spec in specs
    ]
