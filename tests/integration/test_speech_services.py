"""Speech-to-text and text-to-speech services through the real path: pipeline → Prefect run → bundle → HTTP API."""

from __future__ import annotations

import base64
import io
import time

import httpx
import numpy as np
import soundfile
import yaml

from tests.integration.conftest import ServerThread, run_pipeline
from tests.security.test_uploads import wav_claiming


def serve(summary):
    from runtime.db import session_factory
    from runtime.keys import create_key
    from runtime.serving import create_app

    with session_factory()() as s:
        key, _ = create_key(s, summary["service_id"])
    return ServerThread(create_app(summary["service_id"])), {"X-API-Key": key}


def test_text_to_speech_template_answers_text_with_a_wav_file(prefect_api, template_dir):
    from blocks.speech.audio import decode_wav

    summary = run_pipeline(template_dir / "text-to-speech.yaml")
    assert summary["status"] == "succeeded", summary["error"]
    server, headers = serve(summary)
    with server:
        r = httpx.post(f"{server.url}/v1/predict", json={"text": "Your parcel is on its way."}, headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        x = decode_wav(base64.b64decode(body["audio_base64"]))
        assert body["sample_rate"] == 16000 and abs(len(x) / 16000 - body["seconds"]) < 0.01 and body["seconds"] > 1
        too_long = httpx.post(f"{server.url}/v1/predict", json={"text": "a" * 2001}, headers=headers)
        assert too_long.status_code == 413 and "at most 2000" in too_long.json()["error"]
        blank = httpx.post(f"{server.url}/v1/predict", json={"text": "  "}, headers=headers)
        assert blank.status_code == 422 and blank.json()["error"] == "the text is blank"
        # Within the character limit but too long to speak: refused inside predict, a 4xx with one sentence
        # (the previous code answered a bare 500).
        endless = httpx.post(f"{server.url}/v1/predict", json={"text": "1 " * 1000}, headers=headers, timeout=120)
        assert endless.status_code == 422, endless.text
        assert endless.json() == {"error": endless.json()["error"]} and "the limit is 120 s" in endless.json()["error"]


def test_speech_to_text_with_a_command_grammar_measured_on_clips_and_served(prefect_api, tmp_path):
    from blocks.speech.synth import speak

    words = ["yes", "no", "stop", "go"]
    pipeline = {
        "schema_version": 1,
        "name": "commands-asr",
        "blocks": {
            "speech": {
                "use": "speech.synth-commands@1.0.0",
                "params": {
                    "words": words,
                    "engines": ["espeak-ng"],  # the grammar measured on espeak-ng's held-out voice
                    "voices": 4,
                    "speeds": [150],
                    "pitches": [50],
                    "unknown": False,
                    "silence": False,
                    "noise": 0.0,
                    "reverb": 0.0,
                },
            },  # fmt: skip
            "asr": {"use": "speech.asr-pocketsphinx@1.0.0"},  # the grammar: the clips' labels
            "api": {"use": "service.api@1.0.0"},
        },
        "edges": ["speech.clips -> asr.clips", "asr.model -> api.model"],
        "compute": "compute.local@1.0.0",
        "budget": "1 AIC",
    }
    path = tmp_path / "asr.yaml"
    path.write_text(yaml.safe_dump(pipeline))
    summary = run_pipeline(path)
    assert summary["status"] == "succeeded", summary["error"]
    m = summary["metrics"]
    assert m["vocabulary"] == "grammar" and m["eval_clips"] == 4 and m["accuracy"] >= 0.5, m
    server, headers = serve(summary)
    with server:
        flac = io.BytesIO()
        soundfile.write(flac, speak("stop", "en-us", 150, 50), 16000, format="FLAC")
        r = httpx.post(
            f"{server.url}/v1/predict", files={"file": ("stop.flac", flac.getvalue(), "audio/flac")}, headers=headers
        )
        assert r.status_code == 200 and r.json() == {"text": "stop"}, r.text
        as_json = httpx.post(
            f"{server.url}/v1/predict",
            json={"audio_base64": base64.b64encode(flac.getvalue()).decode()},
            headers=headers,
        )
        assert as_json.json() == r.json()
        bad = httpx.post(
            f"{server.url}/v1/predict", files={"file": ("x.wav", np.ones(10).tobytes(), "audio/wav")}, headers=headers
        )
        assert bad.status_code == 422 and bad.json()["error"] == "the data is not WAV or FLAC audio"
        # A header claiming 4 GHz: refused before any resampling, however big the body (the old resampler spent
        # minutes of CPU on such an item).
        started = time.monotonic()
        claimed = httpx.post(
            f"{server.url}/v1/predict",
            files={"file": ("x.wav", wav_claiming(4_000_000_000, seconds_of_body=30), "audio/wav")},
            headers=headers,
            timeout=30,
        )
        assert claimed.status_code == 422 and "4,000,000,000 Hz" in claimed.json()["error"], claimed.text
        assert time.monotonic() - started < 1.0
