"""The loopback Hub (tests/fake_hub/) answers plain huggingface_hub the way the Hub does.

Every round trip runs huggingface_hub in a child process pointed at the server with
HF_ENDPOINT (see fake_hub/fixtures.py for why).
"""

import json
import urllib.error
import urllib.request

import pytest

FILES = {
    "config.json": '{"model_type": "demo", "hidden_size": 4}\n',
    "README.md": "---\nlicense: apache-2.0\ntags:\n- demo\n---\n# Demo\n",
    "nested/deeper/data.bin": bytes(range(256)) * 40,
    "notes.txt": "été ünïcode ✓\n",
}

PRELUDE = """
import json, os, pathlib, sys
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import (EntryNotFoundError, RepositoryNotFoundError,
                                    RevisionNotFoundError, HfHubHTTPError)
api = HfApi()
"""


def write_folder(root, files):
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    return root


def upload(hub_python, repo_id, folder, revision=None, create=True, extra=""):
    """create_repo (exist_ok) + upload_folder in a child process; returns the commit oid."""
    out = hub_python(PRELUDE + f"""
if {create!r}:
    api.create_repo({repo_id!r}, exist_ok=True)
info = api.upload_folder(repo_id={repo_id!r}, folder_path={str(folder)!r}, revision={revision!r})
{extra}
print("OID", info.oid)
""")
    return out.stdout.split("OID ")[-1].strip()


def http(method, url, body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def test_create_repo_whoami_and_conflict(hub_python, hub_server, hub_repo_id):
    out = hub_python(PRELUDE + f"""
print("WHO", api.whoami()["name"])
url = api.create_repo({hub_repo_id!r})
print("URL", url, url.repo_id)
again = api.create_repo({hub_repo_id!r}, exist_ok=True)
assert again.repo_id == {hub_repo_id!r}, again
try:
    api.create_repo({hub_repo_id!r})
except HfHubHTTPError as e:
    print("CONFLICT", e.response.status_code)
""")
    assert f"WHO {hub_server.user}" in out.stdout
    assert f"URL {hub_server.endpoint}/{hub_repo_id} {hub_repo_id}" in out.stdout
    assert "CONFLICT 409" in out.stdout
    # A new repo holds the Hub's initial commit with .gitattributes.
    assert list(hub_server.state.files(hub_repo_id)) == [".gitattributes"]


def test_upload_folder_then_download_everything(hub_python, hub_server, hub_repo_id, tmp_path):
    folder = write_folder(tmp_path / "src", FILES)
    oid = upload(hub_python, hub_repo_id, folder)
    assert oid == hub_server.state.head(hub_repo_id)
    assert len(hub_server.state.history(hub_repo_id)) == 2  # initial commit + upload

    out = hub_python(PRELUDE + f"""
files = sorted(api.list_repo_files({hub_repo_id!r}))
print("FILES", json.dumps(files))
one = hf_hub_download({hub_repo_id!r}, "nested/deeper/data.bin")
print("ONE", one)
snap = snapshot_download({hub_repo_id!r})
print("SNAP", snap)
info = api.model_info({hub_repo_id!r}, files_metadata=True)
print("SHA", info.sha)
print("CARD", json.dumps(info.card_data.to_dict()))
print("SIZES", json.dumps({{s.rfilename: s.size for s in info.siblings}}))
""")
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)
    assert json.loads(lines["FILES"]) == sorted([".gitattributes", *FILES])
    assert open(lines["ONE"], "rb").read() == FILES["nested/deeper/data.bin"]
    snap = lines["SNAP"]
    for rel, content in FILES.items():
        expected = content.encode() if isinstance(content, str) else content
        assert open(f"{snap}/{rel}", "rb").read() == expected, rel
    assert oid in snap and lines["SHA"] == oid
    assert json.loads(lines["CARD"])["license"] == "apache-2.0"
    assert json.loads(lines["SIZES"])["nested/deeper/data.bin"] == len(FILES["nested/deeper/data.bin"])


def test_tree_refs_and_paths_info(hub_python, hub_repo_id, tmp_path):
    upload(hub_python, hub_repo_id, write_folder(tmp_path / "src", FILES))
    out = hub_python(PRELUDE + f"""
top = sorted((type(e).__name__, e.path) for e in api.list_repo_tree({hub_repo_id!r}))
print("TOP", json.dumps(top))
sub = sorted(e.path for e in api.list_repo_tree({hub_repo_id!r}, path_in_repo="nested", recursive=True))
print("SUB", json.dumps(sub))
infos = api.get_paths_info({hub_repo_id!r}, ["notes.txt", "nested", "missing.txt"])
print("INFO", json.dumps([(type(i).__name__, i.path) for i in infos]))
refs = api.list_repo_refs({hub_repo_id!r})
print("REFS", json.dumps([b.name for b in refs.branches]))
try:
    list(api.list_repo_tree({hub_repo_id!r}, path_in_repo="no-such-dir"))
except EntryNotFoundError:
    print("TREE404 ok")
""")
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)
    assert json.loads(lines["TOP"]) == [
        ["RepoFile", ".gitattributes"], ["RepoFile", "README.md"], ["RepoFile", "config.json"],
        ["RepoFile", "notes.txt"], ["RepoFolder", "nested"]]
    assert json.loads(lines["SUB"]) == ["nested/deeper", "nested/deeper/data.bin"]
    assert json.loads(lines["INFO"]) == [["RepoFile", "notes.txt"], ["RepoFolder", "nested"]]
    assert json.loads(lines["REFS"]) == ["main"]
    assert lines["TREE404"] == "ok"


def test_branch_upload_and_download_by_revision(hub_python, hub_server, hub_repo_id, tmp_path):
    main_oid = upload(hub_python, hub_repo_id, write_folder(tmp_path / "main", FILES))
    dev_files = {**FILES, "notes.txt": "dev version\n", "only-on-dev.txt": "x"}
    dev_folder = write_folder(tmp_path / "dev", dev_files)
    out = hub_python(PRELUDE + f"""
api.create_branch({hub_repo_id!r}, branch="dev")
info = api.upload_folder(repo_id={hub_repo_id!r}, folder_path={str(dev_folder)!r}, revision="dev")
print("DEV", info.oid)
print("DEVNOTES", repr(open(hf_hub_download({hub_repo_id!r}, "notes.txt", revision="dev")).read()))
print("MAINNOTES", repr(open(hf_hub_download({hub_repo_id!r}, "notes.txt")).read()))
try:
    hf_hub_download({hub_repo_id!r}, "only-on-dev.txt")
except EntryNotFoundError:
    print("MAINMISSING ok")
snap = snapshot_download({hub_repo_id!r}, revision="dev")
print("SNAPFILES", json.dumps(sorted(str(p.relative_to(snap)) for p in pathlib.Path(snap).rglob("*") if p.is_file())))
by_sha = hf_hub_download({hub_repo_id!r}, "notes.txt", revision={main_oid!r})
print("BYSHA", repr(open(by_sha).read()))
""")
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)
    assert lines["DEVNOTES"] == repr("dev version\n")
    assert lines["MAINNOTES"] == repr(FILES["notes.txt"])
    assert lines["MAINMISSING"] == "ok"
    assert "only-on-dev.txt" in json.loads(lines["SNAPFILES"])
    assert lines["BYSHA"] == repr(FILES["notes.txt"])
    assert hub_server.state.head(hub_repo_id) == main_oid
    assert hub_server.state.head(hub_repo_id, "dev") == lines["DEV"]
    assert hub_server.state.history(hub_repo_id, "dev")[1].oid == main_oid


def test_reupload_unchanged_folder_makes_no_commit(hub_python, hub_server, hub_repo_id, tmp_path):
    """huggingface_hub compares the preupload `oid` (git blob sha1) with the local file and skips
    unchanged files; with nothing left it makes no commit and returns the current head."""
    folder = write_folder(tmp_path / "src", FILES)
    first = upload(hub_python, hub_repo_id, folder)
    n_commits = len(hub_server.state.history(hub_repo_id))
    second = upload(hub_python, hub_repo_id, folder, create=False)
    assert second == first
    assert len(hub_server.state.history(hub_repo_id)) == n_commits

    (folder / "notes.txt").write_text("changed\n")
    third = upload(hub_python, hub_repo_id, folder, create=False)
    assert third != first
    assert hub_server.state.history(hub_repo_id)[0].changes == {
        "added": [], "modified": ["notes.txt"], "deleted": []}
    # Only the changed file travelled in the commit payload.
    assert hub_server.state.files(hub_repo_id)["notes.txt"] == b"changed\n"


def test_missing_repo_file_and_revision_raise_huggingface_hub_errors(hub_python, hub_repo_id, tmp_path):
    upload(hub_python, hub_repo_id, write_folder(tmp_path / "src", FILES))
    out = hub_python(PRELUDE + f"""
checks = {{
    "repo": (lambda: hf_hub_download("{hub_repo_id}-nope", "config.json"), RepositoryNotFoundError),
    "repo_info": (lambda: api.model_info("{hub_repo_id}-nope"), RepositoryNotFoundError),
    "file": (lambda: hf_hub_download({hub_repo_id!r}, "nope.json"), EntryNotFoundError),
    "revision": (lambda: hf_hub_download({hub_repo_id!r}, "config.json", revision="nope"), RevisionNotFoundError),
    "snapshot_revision": (lambda: snapshot_download({hub_repo_id!r}, revision="nope"), RevisionNotFoundError),
}}
for name, (call, expected) in checks.items():
    try:
        call()
    except expected as e:
        print("RAISED", name, type(e).__name__)
    else:
        print("NO-RAISE", name)
print("EXISTS", api.file_exists({hub_repo_id!r}, "config.json"), api.file_exists({hub_repo_id!r}, "nope"),
      api.repo_exists({hub_repo_id!r}), api.repo_exists("{hub_repo_id}-nope"))
""")
    raised = {line.split()[1] for line in out.stdout.splitlines() if line.startswith("RAISED")}
    assert raised == {"repo", "repo_info", "file", "revision", "snapshot_revision"}, out.stdout
    assert "EXISTS True False True False" in out.stdout


def test_private_repo_needs_the_token(hub_python, hub_server, hub_env, hub_repo_id, tmp_path):
    folder = write_folder(tmp_path / "src", {"secret.txt": "s3cret"})
    hub_python(PRELUDE + f"""
api.create_repo({hub_repo_id!r}, private=True)
api.upload_folder(repo_id={hub_repo_id!r}, folder_path={str(folder)!r})
assert api.model_info({hub_repo_id!r}).private is True
assert open(hf_hub_download({hub_repo_id!r}, "secret.txt")).read() == "s3cret"
""")
    anonymous = hub_server.env(hf_home=tmp_path / "anon_home", token=None)
    out = hub_python(PRELUDE + f"""
for call in (lambda: hf_hub_download({hub_repo_id!r}, "secret.txt"),
             lambda: snapshot_download({hub_repo_id!r}),
             lambda: api.model_info({hub_repo_id!r})):
    try:
        call()
        print("LEAKED")
    except RepositoryNotFoundError as e:
        print("DENIED", e.response.status_code)
""", env=anonymous)
    assert "LEAKED" not in out.stdout
    assert out.stdout.count("DENIED 401") == 3
    # A read token of the owner can read it.
    reader = hub_server.env(hf_home=tmp_path / "reader_home", token=hub_server.read_token)
    hub_python(PRELUDE + f"""
assert open(hf_hub_download({hub_repo_id!r}, "secret.txt")).read() == "s3cret"
""", env=reader)


def test_read_token_and_anonymous_cannot_write(hub_python, hub_server, hub_repo_id, tmp_path):
    hub_python(PRELUDE + f"api.create_repo({hub_repo_id!r})")
    folder = write_folder(tmp_path / "src", {"a.txt": "a"})
    for token in (hub_server.read_token, None):
        out = hub_python(PRELUDE + f"""
try:
    api.upload_folder(repo_id={hub_repo_id!r}, folder_path={str(folder)!r})
    print("WROTE")
except HfHubHTTPError as e:
    print("REFUSED", e.response.status_code)
""", env=hub_server.env(hf_home=tmp_path / f"home-{token}", token=token))
        assert "WROTE" not in out.stdout and "REFUSED" in out.stdout
    assert list(hub_server.state.files(hub_repo_id)) == [".gitattributes"]


@pytest.mark.parametrize("after_lines", [None, 1, 2])
def test_failed_commit_leaves_branch_unchanged(hub_python, hub_server, hub_repo_id, tmp_path, after_lines):
    folder = write_folder(tmp_path / "src", FILES)
    before = upload(hub_python, hub_repo_id, folder)
    (folder / "notes.txt").write_text("new\n")
    (folder / "new.txt").write_text("new file\n")
    # 400: huggingface_hub does not retry it (500 would be retried by the upload pipeline).
    hub_server.state.fail_commits(times=1, status=400, after_lines=after_lines)
    try:
        out = hub_python(PRELUDE + f"""
from huggingface_hub import CommitOperationAdd
ops = [CommitOperationAdd(path_in_repo=p, path_or_fileobj={str(folder)!r} + "/" + p)
       for p in ("notes.txt", "new.txt")]
try:
    api.create_commit({hub_repo_id!r}, operations=ops, commit_message="should fail")
    print("COMMITTED")
except HfHubHTTPError as e:
    print("FAILED", e.response.status_code)
""")
    finally:
        hub_server.state.clear_failures()
    assert "FAILED 400" in out.stdout
    assert hub_server.state.head(hub_repo_id) == before
    assert hub_server.state.files(hub_repo_id)["notes.txt"] == FILES["notes.txt"].encode()
    assert "new.txt" not in hub_server.state.files(hub_repo_id)


def test_malformed_and_lfs_commits_are_rejected_atomically(hub_server, hub_python, hub_repo_id):
    hub_python(PRELUDE + f"api.create_repo({hub_repo_id!r})")
    head = hub_server.state.head(hub_repo_id)
    url = f"{hub_server.endpoint}/api/models/{hub_repo_id}/commit/main"
    auth = {"Authorization": f"Bearer {hub_server.token}", "Content-Type": "application/x-ndjson"}
    good_file = json.dumps({"key": "file", "value": {"path": "a.txt", "content": "YQ==", "encoding": "base64"}})
    header = json.dumps({"key": "header", "value": {"summary": "x", "description": ""}})
    lfs = json.dumps({"key": "lfsFile", "value": {"path": "w.bin", "algo": "sha256", "oid": "0" * 64, "size": 3}})
    bodies = {
        "truncated json": f"{header}\n{good_file}\n{{\"key\": \"file\", \"val",
        "no header": f"{good_file}\n",
        "bad base64": header + "\n" + good_file.replace("YQ==", "!!!") + "\n",
        "path escape": header + "\n" + good_file.replace("a.txt", "../a.txt") + "\n",
        "lfs": f"{header}\n{good_file}\n{lfs}\n",
        "delete missing": header + "\n" + json.dumps({"key": "deletedFile", "value": {"path": "zz"}}) + "\n",
    }
    for name, body in bodies.items():
        status, headers, payload = http("POST", url, body.encode(), auth)
        assert 400 <= status < 500, (name, status, payload)
        assert json.loads(payload)["error"], name
        assert hub_server.state.head(hub_repo_id) == head, name
    status, _, payload = http("POST", url, body=bodies["lfs"].encode(), headers=auth)
    assert status == 422 and b"lfsFile" in payload
    # The same commit without the bad line goes through.
    status, _, payload = http("POST", url, f"{header}\n{good_file}\n".encode(), auth)
    assert status == 200, payload
    assert hub_server.state.files(hub_repo_id)["a.txt"] == b"a"


def test_unknown_endpoints_are_loud_and_recorded(hub_server):
    seen = len(hub_server.state.unhandled)
    status, headers, payload = http("GET", f"{hub_server.endpoint}/api/spaces/x/y/runtime-magic")
    assert status == 501 and "not implemented" in json.loads(payload)["error"]
    status, _, _ = http("PUT", f"{hub_server.endpoint}/api/models/x/y/settings", b"{}")
    assert status == 501
    assert [m for m, _ in hub_server.state.unhandled[seen:]] == ["GET", "PUT"]
    del hub_server.state.unhandled[seen:]  # keep the session log clean for other tests


@pytest.mark.slow
def test_olah_offline_mirror_serves_local_git_repos(olah_mirror, hub_python, tmp_path):
    files = {"config.json": '{"a": 1}\n', "sub/dir/weights.bin": bytes(range(200)) * 3, "README.md": "# hi\n"}
    sha = olah_mirror.add_repo("mirror-org/tiny", files)
    env = olah_mirror.env(tmp_path / "hf_home")
    out = hub_python(PRELUDE + """
p = hf_hub_download("mirror-org/tiny", "sub/dir/weights.bin")
print("ONE", p)
snap = snapshot_download("mirror-org/tiny")
print("SNAP", snap)
print("FILES", json.dumps(sorted(api.list_repo_files("mirror-org/tiny"))))
try:
    hf_hub_download("mirror-org/tiny", "nope.txt")
except (EntryNotFoundError, RepositoryNotFoundError) as e:
    # olah 0.5.4 offline answers a missing file of a mirrored repo with 401 RepoNotFound
    # (its resolve route falls back to the offline cache, which does not know the repo).
    print("MISSING", type(e).__name__)
""", env=env)
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)
    assert open(lines["ONE"], "rb").read() == files["sub/dir/weights.bin"]
    assert sha in lines["SNAP"]
    for rel, content in files.items():
        expected = content.encode() if isinstance(content, str) else content
        assert open(f"{lines['SNAP']}/{rel}", "rb").read() == expected
    assert json.loads(lines["FILES"]) == sorted(files)
    assert lines["MISSING"] in ("RemoteEntryNotFoundError", "RepositoryNotFoundError")
