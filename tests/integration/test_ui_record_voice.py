"""Recording in a real browser: Chromium's fake microphone plays a word spoken by espeak-ng (a WAV file), the user
records it with the Services page's recorder, asks the keyword service, and gets its label back; then records the
same word for "Your own voice", which keeps it in the pipeline's folder.

The service is a tiny voice-commands run (4 espeak-ng voices, one speed and pitch, 2 epochs of an 8-channel model):
its labels are what matters here, not its accuracy."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from playwright.sync_api import expect

from tests.integration.conftest import open_page, run_pipeline
from tests.integration.test_ui_browser import settled

PIPELINE = {
    "schema_version": 1,
    "name": "my-voice-commands",
    "blocks": {
        "speech": {
            "use": "speech.synth-commands@1.0.0",
            "params": {"voices": 4, "speeds": [160], "pitches": [50], "engines": ["espeak-ng"]},
        },
        "features": {"use": "speech.log-mel@1.0.0"},
        "kws": {"use": "speech.kws-cnn@1.0.0", "params": {"epochs": 2, "channels": 8}},
        "api": {"use": "service.api@1.0.0"},
    },
    "edges": ["speech.clips -> features.clips", "features.clips -> kws.clips", "kws.model -> api.model"],
    "compute": "compute.local@1.0.0",
}
RECORD_MS = 1500  # the fake microphone plays the word about once a second


@pytest.fixture(scope="module")
def microphone(tmp_path_factory) -> Path:
    """The fake microphone's sound: "stop" spoken by espeak-ng, then silence (Chromium plays the file in a loop)."""
    from blocks.speech.audio import SAMPLE_RATE, encode_wav
    from blocks.speech.synth import speak

    word = speak("stop", "en-us", 160, 50)
    x = np.concatenate([np.zeros(SAMPLE_RATE // 5, np.float32), word, np.zeros(SAMPLE_RATE // 2, np.float32)])
    path = tmp_path_factory.mktemp("microphone") / "stop.wav"
    path.write_bytes(encode_wav(x))
    return path


@pytest.fixture(scope="module")
def browser(microphone):
    """Debian's chromium with its fake microphone playing `microphone` and the permission prompt answered yes."""
    from playwright.sync_api import sync_playwright

    from builder.cli.launch import CHROMIUM, CHROMIUM_FLAGS

    assert shutil.which(CHROMIUM), "Debian's chromium is missing: `make test` installs it (apt-get install chromium)"
    fake = [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={microphone}",
    ]
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_FLAGS, *fake])
        yield b
        b.close()


@pytest.fixture()
def page(browser, ui_url, tmp_path):
    yield from open_page(browser, ui_url, tmp_path, permissions=["microphone"])


@pytest.fixture(scope="module")
def speech_service(prefect_api) -> dict:
    """A tiny keyword service trained from a pipeline in My pipelines (so its page can record the user's voice)."""
    from builder.ui.actions import new_workspace

    workspace = new_workspace("my-voice-commands")
    (workspace / "pipeline.yaml").write_text(yaml.safe_dump(PIPELINE, sort_keys=False))
    summary = run_pipeline(workspace / "pipeline.yaml")
    assert summary["status"] == "succeeded", summary["error"]
    return {**summary, "workspace": workspace}


def record(page, label: str) -> None:
    """Press Record on the recorder called `label`, let the microphone play, and press Stop."""
    recorder = page.locator("[data-testid='stAudioInput']").filter(has_text=label)
    recorder.get_by_role("button", name="Record").click()
    page.wait_for_timeout(RECORD_MS)
    recorder.get_by_role("button", name="Stop recording").click()


def usage_calls(service_id: str) -> int:
    from sqlalchemy import func, select

    from runtime.db import Usage, session_factory

    with session_factory()() as s:
        return s.scalar(select(func.count()).where(Usage.service_id == service_id, Usage.unit == "call"))


def test_a_recording_in_the_browser_is_answered_by_the_service_and_kept_for_the_users_own_voice(speech_service, page):
    from builder.ui.results import bundle_manifest, display_label
    from runtime.db import Service, session_factory

    service_id = speech_service["service_id"]
    with session_factory()() as s:
        labels = bundle_manifest(s.get(Service, service_id).bundle_dir)["labels"]
    before = usage_calls(service_id)
    page.goto(f"{page.base}/services?service={service_id}")
    page.get_by_role("tab", name="Try it").wait_for()
    settled(page)

    record(page, "Record it")
    # Uploaded once its Play button is back in place of the spinner (in a form, nothing reruns until Ask).
    recorder = page.locator("[data-testid='stAudioInput']").filter(has_text="Record it")
    expect(recorder.get_by_role("button", name="Play")).to_be_visible(timeout=30_000)
    page.get_by_role("button", name="Ask").click()
    page.get_by_text("Billed as one call, like an API call.").wait_for()
    assert usage_calls(service_id) == before + 1  # the recording went to the service, billed like an API call
    page.get_by_text("What the API returns").click()
    returned = page.locator("[data-testid='stJson']").first.inner_text()
    label = re.search(r'label"?\s*:\s*"([^"]+)"', returned).group(1)
    assert label in labels, (label, labels)
    shown = {"_unknown_": "Not one of the commands: (another word)", "_silence_": "Not one of the commands: (silence)"}
    if label in shown:
        page.get_by_text(shown[label]).wait_for()
    else:
        expect(page.locator("[data-testid='stAlertContentSuccess']").first).to_have_text(display_label(label))

    # The same word for "Your own voice": checked, cut to the word and kept in the pipeline's folder.
    settled(page)
    page.get_by_text(re.compile(r"^stop$")).click()
    expect(page.get_by_role("radio", name="stop")).to_be_checked()
    record(page, "Say “stop”")
    page.get_by_text("Kept as stop/001.wav.").or_(page.get_by_text("was not kept")).first.wait_for()
    assert page.get_by_text("Kept as stop/001.wav.").is_visible(), page.locator(
        "[data-testid='stAlert']"
    ).all_inner_texts()
    kept = speech_service["workspace"] / "own-voice" / "stop" / "001.wav"
    assert kept.is_file()
    page.get_by_text("1 recording: record 2 more.").wait_for()
    expect(page.get_by_role("radio", name="stop")).to_be_checked()  # the word stays picked
    page.get_by_text(re.compile(r"^Recorded so far: yes 0 · .* stop 1 · go 0 · other words 0$")).wait_for()
    expect(page.get_by_role("radio", name="other words")).to_be_visible()  # `_unknown_`, by its name for people
    expect(page.get_by_role("button", name="Train it again with my voice")).to_be_disabled()
