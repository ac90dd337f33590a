"""Publishing a trained CharRNN output folder to the Hugging Face Hub.

:func:`push_output_dir` checks everything it can before touching the network (the repo id,
a token, that the folder holds a trained model), renders the model card, then uploads in
ONE commit (``HfApi.create_commit``):

* the model: ``config.json``, ``model.safetensors`` (or an index and its shards),
  ``generation_config.json``;
* the tokenizer: ``tokenizer.json``, ``tokenizer_config.json`` (and the other tokenizer
  files transformers may write);
* the remote code that ``config.json``'s ``auto_map`` names (``configuration_charrnn.py``,
  ``modeling_charrnn.py``): the installed package's copies, not the ones ``save_pretrained``
  left in the folder, so every push refreshes a repo's code to the tested version
  (:mod:`hf_charrnn.remote_code`) and the repo loads with ``trust_remote_code=True`` where
  hf_charrnn is not installed;
* ``README.md``: the model card (:func:`hf_charrnn.model_card.render_model_card`);
* ``training_summary.json`` and the loss-curve image, when present.

Nothing else from the folder is uploaded (no ``checkpoint-*`` folders, TensorBoard runs,
optimizer states or pickled ``training_args.bin``). Weights files left on the branch by an
earlier push in another layout (e.g. shards) are deleted in the same commit.

Because it is one commit, a push that fails leaves the branch at its previous commit, and
``huggingface_hub`` leaves out files whose content the branch already has (it compares git
blob ids): pushing an unchanged folder again makes no commit at all.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    HfApi,
    get_token,
    hf_hub_url,
)
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.utils import HFValidationError, validate_repo_id

from .model_card import (
    CELL_NAMES,
    format_number,
    read_json_or_empty,
    render_model_card,
)
from .explain.report import is_explain_report, report_model_fingerprint
from .model_loading import WEIGHTS_INDEX, check_model_folder, index_shards
from .modeling_charrnn import CharRNNForCausalLM
from .remote_code import package_copy
from .reporting import LOSS_CURVE_FILE, SUMMARY_FILE
from .states import model_fingerprint

MODEL_FILES = ("config.json", "generation_config.json")
EXPLAIN_REPORT_FILE = "explain.html"  # where a pushed `hf-charrnn explain` page goes in the repo
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
)
# Weights files a push owns on the branch: those not part of the new upload are deleted.
_WEIGHT_FILE_RE = re.compile(
    r"^(model\.safetensors|model-\d+-of-\d+\.safetensors|model\.safetensors\.index\.json"
    r"|pytorch_model(-\d+-of-\d+)?\.bin|pytorch_model\.bin\.index\.json)$"
)


class PushToHubError(ValueError):
    """A push refused before anything was uploaded: bad repo id, no token, not a model folder."""


# ----------------------------------------------------------------------------------------
# Checks
# ----------------------------------------------------------------------------------------


def check_repo_id(repo_id: str) -> str:
    """``"namespace/name"`` or ``"name"`` (then the token's user is the namespace)."""
    if not isinstance(repo_id, str) or not repo_id:
        raise PushToHubError(f"A Hub repo id like 'your-name/charrnn-shakespeare' is needed, got {repo_id!r}.")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise PushToHubError(f"Invalid Hub repo id {repo_id!r}: {error}") from None
    if repo_id.count("/") > 1:  # validate_repo_id allows at most one "/", but be explicit
        raise PushToHubError(f"Invalid Hub repo id {repo_id!r}: use 'namespace/name'.")
    return repo_id


def check_push_folder(output_dir: str | os.PathLike) -> Path:
    """The folder must hold a model `hf-charrnn generate` could load: the rules of `check_model_folder`."""
    folder = Path(output_dir)
    try:
        check_model_folder(folder)
    except (OSError, ValueError) as error:
        raise PushToHubError(f"{error} Push the output folder of `hf-charrnn train`, or a folder where a model and "
                             "its tokenizer were saved with save_pretrained().") from None
    return folder


def _require_token(token: str | None) -> str:
    token = token or get_token()
    if not token:
        raise PushToHubError(
            "No Hugging Face token found: pass token=..., set the HF_TOKEN environment variable, "
            "or log in with `hf auth login`. Pushing needs a token with write access."
        )
    return token


# ----------------------------------------------------------------------------------------
# Push
# ----------------------------------------------------------------------------------------


def _remote_code_modules(config: dict[str, Any]) -> list[str]:
    """Module names (``configuration_charrnn``...) that config.json's auto_map points at."""
    modules = []
    for value in (config.get("auto_map") or {}).values():
        for ref in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(ref, str) and "." in ref:
                ref = ref.split("--", 1)[-1]  # "repo--module.Class" form
                modules.append(ref.rsplit(".", 1)[0])
    return list(dict.fromkeys(modules))


def _default_auto_map() -> dict[str, str]:
    return {
        "AutoConfig": "configuration_charrnn.CharRNNConfig",
        "AutoModelForCausalLM": "modeling_charrnn.CharRNNForCausalLM",
    }


def explain_report_url(repo_id: str, revision: str | None = None) -> str:
    """Where the card's link downloads the pushed page: the Hub shows an HTML file as source, so the link asks for
    the file itself (`?download=true`), to open in a browser."""
    return hf_hub_url(repo_id, EXPLAIN_REPORT_FILE, revision=revision) + "?download=true"


def check_explain_report(path: str | os.PathLike, output_dir: str | os.PathLike) -> Path:
    """A page written by `hf-charrnn explain` with the model in `output_dir` (its fingerprint: configuration and
    weights), or a PushToHubError that says how to make one."""
    report, remake = Path(path), f"`hf-charrnn explain {output_dir} --text_file SAMPLE.txt --output explain.html`"
    if not report.is_file() or not is_explain_report(report):
        raise PushToHubError(f"{path} is not a page written by `hf-charrnn explain`; make one with {remake}.")
    model = CharRNNForCausalLM.from_pretrained(output_dir)
    if report_model_fingerprint(report) != model_fingerprint(model):
        raise PushToHubError(f"{path} was made with another model than the one in {output_dir} (or before it was "
                             f"trained further); make it again with {remake}.")
    return report


def collect_upload(output_dir: str | os.PathLike, repo_id: str, *, license: str | None = None,
                   explain_report: str | os.PathLike | None = None, revision: str | None = None
                   ) -> dict[str, bytes | Path]:
    """What a push uploads, as ``{path_in_repo: local path or bytes}`` (see the module docstring); with
    ``explain_report``, that page too, as ``explain.html``, linked from the card (on branch ``revision``)."""
    folder = check_push_folder(output_dir)
    files: dict[str, bytes | Path] = {}
    if explain_report is not None:
        files[EXPLAIN_REPORT_FILE] = check_explain_report(explain_report, folder)
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if not config.get("auto_map"):
        # Without auto_map, trust_remote_code has nothing to load: add the package's entry points.
        config["auto_map"] = _default_auto_map()
        files["config.json"] = (json.dumps(config, indent=2, sort_keys=True) + "\n").encode()
    else:
        files["config.json"] = config_path
    for name in MODEL_FILES + TOKENIZER_FILES:
        if name not in files and (folder / name).is_file():
            files[name] = folder / name
    if (folder / "model.safetensors").is_file():
        files["model.safetensors"] = folder / "model.safetensors"
    else:
        files[WEIGHTS_INDEX] = folder / WEIGHTS_INDEX
        for shard in index_shards(folder):  # check_push_folder read the index
            files[shard] = folder / shard
    for module in _remote_code_modules(config):
        name = f"{module}.py"
        if package_copy(name) is not None:  # the installed, tested code, even where the folder has an older copy
            files[name] = package_copy(name)
        elif (folder / name).is_file():
            files[name] = folder / name
        else:
            raise PushToHubError(
                f"config.json's auto_map refers to {name}, which is neither in {folder} nor in hf_charrnn.")
    summary = read_json_or_empty(folder / SUMMARY_FILE)
    if (folder / SUMMARY_FILE).is_file():
        files[SUMMARY_FILE] = folder / SUMMARY_FILE
    curve = summary.get("loss_curve") or LOSS_CURVE_FILE
    if isinstance(curve, str) and (folder / curve).is_file() and not Path(curve).is_absolute():
        files[Path(curve).as_posix()] = folder / curve
    files["README.md"] = _card_bytes(folder, repo_id, license, explain_report is not None, revision)
    return files


def _card_bytes(folder: Path, repo_id: str, license: str | None, links_explain_report: bool,
                revision: str | None) -> bytes:
    """The model card for `repo_id`, as uploaded (its usage snippets name the repo)."""
    report_url = explain_report_url(repo_id, revision) if links_explain_report else None
    return str(render_model_card(folder, repo_id, license=license, explain_report_url=report_url)).encode("utf-8")


def push_output_dir(
    output_dir: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
    license: str | None = None,
    explain_report: str | os.PathLike | None = None,
):
    """Upload a training output folder to the Hub as ``repo_id``, in one commit; returns its ``CommitInfo``.
    ``explain_report``, a page of `hf-charrnn explain`, goes with it as ``explain.html``, linked from the card.

    Checks first, and raises :class:`PushToHubError` before any upload, when the repo id is
    malformed, no token is available (``token=``, ``HF_TOKEN`` or a stored login), the
    folder is not a trained CharRNN (see ``check_push_folder``), or
    the Hub rejects the token. Creates the repo if needed (``private`` applies only then),
    and the branch ``revision`` from the default branch if it does not exist. The endpoint
    is huggingface_hub's (``HF_ENDPOINT``). If nothing changed since the last push, no
    commit is made and the returned ``CommitInfo`` points at the current head.
    """
    check_repo_id(repo_id)
    folder = check_push_folder(output_dir)
    token = _require_token(token)
    _check_branch_name(revision)
    # Render everything before any network call: a broken card fails here, not half-way.
    files = collect_upload(folder, repo_id if "/" in repo_id else f"user/{repo_id}", license=license,
                           explain_report=explain_report, revision=revision)
    api = HfApi(token=token)
    user = _authenticated_user(api)
    if "/" not in repo_id:  # the card's snippets name the repo: render it again for the user's namespace
        repo_id = f"{user['name']}/{repo_id}"
        files["README.md"] = _card_bytes(folder, repo_id, license, explain_report is not None, revision)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model").repo_id
    branch = revision or "main"
    if revision is not None and revision != "main":
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    return api.create_commit(
        repo_id,
        operations=_commit_operations(api, repo_id, branch, files),
        commit_message=commit_message or _default_commit_message(folder),
        revision=branch,
        repo_type="model",
    )


def _check_branch_name(revision: str | None) -> None:
    if revision is not None and (
        not re.fullmatch(r"[A-Za-z0-9._/-]+", revision)
        or ".." in revision
        or revision.startswith(("/", "-", "."))
        or revision.endswith(("/", ".lock"))
    ):
        raise PushToHubError(f"Invalid branch name {revision!r}.")


def _authenticated_user(api: HfApi) -> dict[str, Any]:
    """The token's user; a rejected token is the user's to fix, any other HTTP error is raised as it is."""
    try:
        return api.whoami()
    except HfHubHTTPError as error:
        status = error.response.status_code if error.response is not None else None
        if status == 401:
            raise PushToHubError(
                "The Hugging Face Hub rejected the token (401): check HF_TOKEN / `hf auth login`; "
                "pushing needs a token with write access.") from error
        raise


def _commit_operations(api: HfApi, repo_id: str, branch: str, files: dict[str, bytes | Path]) -> list:
    """Every file of the upload, and the deletion of weights files of another layout left on the branch."""
    remote_files = set(api.list_repo_files(repo_id, revision=branch))
    operations: list[CommitOperationAdd | CommitOperationDelete] = [
        CommitOperationDelete(path_in_repo=path)
        for path in sorted(remote_files)
        if _WEIGHT_FILE_RE.match(path) and path not in files
    ]
    return operations + [
        CommitOperationAdd(path_in_repo=path, path_or_fileobj=str(source) if isinstance(source, Path) else source)
        for path, source in sorted(files.items())
    ]


def _default_commit_message(folder: Path) -> str:
    cell = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("cell_type")
    validation = read_json_or_empty(folder / SUMMARY_FILE).get("validation")
    bpc = format_number(validation.get("bpc")) if isinstance(validation, dict) else None
    message = f"Upload CharRNN model ({CELL_NAMES.get(cell, cell)}"
    return message + (f", validation bpc {bpc})" if bpc else ")")


__all__ = [
    "PushToHubError",
    "check_push_folder",
    "check_repo_id",
    "collect_upload",
    "push_output_dir",
]
