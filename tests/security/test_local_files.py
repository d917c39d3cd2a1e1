"""Files and paths on this machine: AIB_HOME is private, a shared password file is refused, and a pipeline (a
stranger's YAML opened in the workbench, say) reads data only from its own folder or folders the user named."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from builder.errors import ChainError, ValidationError
from builder.pipeline import load_pipeline
from tests.conftest import ROOT, TEMPLATES

FAQ = (TEMPLATES / "data" / "faq.csv").read_text()


def faq_pipeline(folder, data_path: str):
    """The FAQ template in `folder`, reading its data from `data_path`."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    pipeline = yaml.safe_load((TEMPLATES / "faq-chatbot-fast.yaml").read_text())
    pipeline["blocks"]["faq"]["params"] = {"path": data_path}
    path = folder / "faq.yaml"
    path.write_text(yaml.safe_dump(pipeline))
    return path


@pytest.mark.parametrize("where", ["absolute", "dot-dot", "symlink"])
def test_a_pipeline_cannot_read_data_outside_its_folder(tmp_path, where):
    secret = tmp_path / "elsewhere" / "secret.csv"  # stands for /etc/shadow, a keystore, another user's file
    secret.parent.mkdir()
    secret.write_text(FAQ)
    work = tmp_path / "work"
    value = {"absolute": str(secret), "dot-dot": "../elsewhere/secret.csv", "symlink": "data/link.csv"}[where]
    if where == "symlink":
        (work / "data").mkdir(parents=True)
        (work / "data" / "link.csv").symlink_to(secret)
    with pytest.raises(ValidationError) as caught:
        load_pipeline(faq_pipeline(work, value))
    (problem,) = [p for p in caught.value.problems if p.path == "blocks.faq.params.path"]
    assert problem.message == (
        f"{value} is outside the pipeline's folder; data is read only from there, from published datasets, or "
        "from a folder named in AIB_DATA_DIRS"
    )


def test_a_folder_the_user_named_in_aib_data_dirs_is_readable(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "faq.csv").write_text(FAQ)
    monkeypatch.setenv("AIB_DATA_DIRS", os.pathsep.join([str(tmp_path / "other"), str(shared)]))
    assert load_pipeline(faq_pipeline(tmp_path / "work", str(shared / "faq.csv"))).nodes["faq"]
    (tmp_path / "work" / "data").mkdir()
    (tmp_path / "work" / "data" / "faq.csv").write_text(FAQ)
    assert load_pipeline(faq_pipeline(tmp_path / "work", "data/faq.csv")).nodes["faq"]  # its own folder, as always


def test_a_password_file_others_can_read_is_refused(tmp_path, monkeypatch):
    from chain.accounts import read_password

    pw = tmp_path / "pw"
    pw.write_text("a long enough password\n")
    pw.chmod(0o644)
    monkeypatch.setenv("AIB_KEYSTORE_PASSWORD_FILE", str(pw))
    with pytest.raises(ChainError) as caught:
        read_password("the keystore password")
    assert str(caught.value) == (
        f"the password file {pw} can be read by other users (mode 0644); make it private: chmod 600 {pw}"
    )
    pw.chmod(0o600)
    assert read_password("the keystore password") == "a long enough password"


def test_aib_home_its_database_and_logs_are_private(tmp_path):
    home = tmp_path / "home"
    env = {**os.environ, "AIB_HOME": str(home), "AIB_PAYMENTS": "off"}
    env.pop("PREFECT_API_URL", None)
    r = subprocess.run([sys.executable, "-m", "builder.cli", "runs", "list"], capture_output=True, text=True,
                       env=env, cwd=ROOT, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    made = [p for p in home.rglob("*") if p.is_file()]
    assert home / "aib.db" in made
    assert [str(p) for p in made if stat.S_IMODE(p.stat().st_mode) & 0o077] == []
