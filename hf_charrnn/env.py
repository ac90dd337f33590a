"""The versions and device a bug report needs (`hf-charrnn env`), like `transformers env`.

Most failures that are not the user's come from a dependency that moved (transformers 5.24 renamed the model state,
for one), so the report names every library hf_charrnn builds on, the range of transformers it supports, and whether
the installed set is the tested one the README installs.
"""

import platform
from importlib import metadata
from pathlib import Path

import torch
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

DEPENDENCIES = (
    "torch", "transformers", "tokenizers", "datasets", "accelerate", "evaluate", "huggingface_hub", "safetensors",
)
# The optional extras (`hf_charrnn[onnx]`, `hf_charrnn[peft]`): reported as installed or not.
OPTIONAL_DEPENDENCIES = ("onnx", "onnxscript", "onnxruntime", "peft")
PINNED_SET = Path(__file__).resolve().parent.parent / "constraints" / "pinned.txt"


def installed_version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def supported_range(dependency: str) -> str:
    """The version range hf_charrnn's own metadata declares for `dependency` (what CI tests)."""
    for text in metadata.requires("hf_charrnn") or []:
        requirement = Requirement(text)
        if requirement.marker is None and canonicalize_name(requirement.name) == canonicalize_name(dependency):
            return str(requirement.specifier) or "any"
    return "any"


def pinned_versions() -> dict[str, str]:
    """The tested set the README installs, by normalised name; empty for an install without the repository."""
    if not PINNED_SET.exists():
        return {}
    pinned = {}
    for line in PINNED_SET.read_text(encoding="utf-8").splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            name, version = line.split("==", 1)
            pinned[canonicalize_name(name)] = version.strip()
    return pinned


def differences_from_pinned_set(versions: dict[str, str]) -> list[str] | str:
    """Dependencies whose installed version is not the pinned, tested one."""
    pinned = pinned_versions()
    if not pinned:
        return "unknown (no constraints/pinned.txt beside the package)"
    return [
        f"{name} {version} (pinned {pinned[canonicalize_name(name)]})"
        for name, version in versions.items()
        if canonicalize_name(name) in pinned and version.split("+")[0] != pinned[canonicalize_name(name)]
    ]


def device_description() -> str:
    if torch.cuda.is_available():
        names = sorted({torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())})
        cudnn = torch.backends.cudnn.version()
        return f"cuda ({torch.cuda.device_count()} x {', '.join(names)}; CUDA {torch.version.cuda}, cuDNN {cudnn})"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return f"cpu ({torch.get_num_threads()} threads, {platform.processor() or platform.machine()})"


def collect() -> dict[str, object]:
    """Everything the report prints, as a dictionary (also what `--json` prints)."""
    versions = {name: installed_version(name) for name in DEPENDENCIES + OPTIONAL_DEPENDENCIES}
    return {
        "hf_charrnn": installed_version("hf_charrnn"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        **versions,
        "supported transformers": supported_range("transformers"),
        "differs from the pinned set": differences_from_pinned_set(versions),
        "device": device_description(),
    }
