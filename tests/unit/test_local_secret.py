"""The installation's secrets (AIB_HOME/secrets/NAME.key): made once, whole, whoever asks first, and the same for
every caller. The coordinator mints provider tokens with one; two providers signing in at the same moment on a fresh
coordinator both ask for it first."""

from __future__ import annotations

import stat

import pytest

from tests.conftest import all_at_once


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("AIB_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_callers_racing_for_a_new_secret_all_get_the_same_whole_one(home):
    from runtime.config import local_secret

    # Made in place, a thread that lost the race read the file empty (21 of 800 callers here failed with "damaged").
    for round_ in range(100):
        got = all_at_once(lambda name=f"race-{round_}": local_secret(name), 8)
        assert len(got) == 8 and len(set(got)) == 1 and isinstance(got[0], bytes) and len(got[0]) == 32, got
    folder = home / "secrets"
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"race-{r}.key" for r in range(100))  # no temp files
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()} == {0o600}


def test_a_secret_is_kept_and_a_damaged_one_is_refused_not_replaced(home):
    from runtime.config import local_secret

    first = local_secret("tokens")
    assert local_secret("tokens") == first
    (home / "secrets" / "tokens.key").write_bytes(b"short")
    with pytest.raises(RuntimeError, match="is damaged"):
        local_secret("tokens")
    assert (home / "secrets" / "tokens.key").read_bytes() == b"short"  # what was signed with it is not silently lost
