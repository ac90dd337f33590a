"""Model card (README.md) front matter, read the way the Hub reads it for ``cardData`` and validate-yaml."""

from __future__ import annotations

import re

try:  # PyYAML ships with huggingface_hub; used only to read README front matter.
    import yaml as _yaml
except Exception:  # pragma: no cover - optional
    _yaml = None

_FRONT_MATTER_RE = re.compile(r"^\s*---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(\r?\n|$)", flags=re.S)


def front_matter(text: str) -> str | None:
    """The YAML block between the leading ``---`` lines of a model card, or None."""
    m = _FRONT_MATTER_RE.match(text)
    return m.group(1) if m else None


def readme_metadata(content: bytes | None) -> dict | None:
    """The README's front matter as a dict (the Hub's ``cardData``); None if absent or not a mapping."""
    if content is None or _yaml is None:
        return None
    block = front_matter(content.decode("utf-8", errors="replace"))
    if block is None:
        return None
    try:
        data = _yaml.safe_load(block)
    except Exception:
        return None
    return data if isinstance(data, dict) else None


def card_yaml_errors(content: object) -> list[dict]:
    """What ``POST /api/validate-yaml`` reports for a card: a few of the Hub's schema checks.

    Without PyYAML, or without front matter, nothing is checked (no errors), so a missing
    optional dependency never fails a push.
    """
    if _yaml is None:
        return []
    block = front_matter(content if isinstance(content, str) else "")
    if block is None:
        return []
    errors: list[dict] = []
    try:
        data = _yaml.safe_load(block)
        if data is not None and not isinstance(data, dict):
            errors.append({"message": "YAML metadata must be a mapping"})
        elif isinstance(data, dict):
            for key in ("tags", "datasets"):
                if key in data and not isinstance(data[key], (list, str)):
                    errors.append({"message": f'"{key}" must be an array of strings'})
            if "model-index" in data and not isinstance(data["model-index"], list):
                errors.append({"message": '"model-index" must be an array'})
    except Exception as exc:
        errors.append({"message": f"Invalid YAML: {exc}"})
    return errors
