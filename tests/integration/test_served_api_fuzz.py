"""Fuzzing a served API from its own OpenAPI schema (schemathesis): whatever a client sends, with or without a key,
no answer is a 5xx, none takes a second, and every 4xx is one sentence under "error"."""

from __future__ import annotations

import time

import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode

EXAMPLES = 40  # per operation and mode: a few minutes for the whole file at most


def check(server, key: str, operation, mode: GenerationMode, problems: list[str]) -> None:
    """Send EXAMPLES cases of `operation` generated in `mode` (schema-valid or schema-breaking), each with or without
    the key; what is wrong goes into `problems`."""
    session = requests.Session()

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(case=operation.as_strategy(generation_mode=mode), keyed=st.booleans())
    def send(case, keyed):
        headers = {**(case.headers or {}), **({"X-API-Key": key} if keyed else {})}
        started = time.monotonic()
        response = case.call(base_url=server.url, session=session, headers=headers)
        seconds = time.monotonic() - started
        where = f"{case.method} {case.path} ({mode.value}, {'with' if keyed else 'without'} a key)"
        if response.status_code >= 500:
            problems.append(f"{where}: {response.status_code} {response.text[:200]}")
        if seconds > 1.0:
            problems.append(f"{where}: answered in {seconds:.2f} s")
        if 400 <= response.status_code < 500:
            try:
                error = response.json()["error"]
            except (ValueError, KeyError, TypeError):
                problems.append(f"{where}: {response.status_code} with no error sentence: {response.text[:200]}")
                return
            if not isinstance(error, str) or not error or "\n" in error or "Traceback" in error:
                problems.append(f"{where}: {response.status_code} error is not one sentence: {error!r}")

    try:
        send()
    except Unsatisfiable:  # nothing in the operation to break (no parameters, no body)
        assert mode is GenerationMode.NEGATIVE


def fuzz(server, key: str) -> list[str]:
    """Every operation of the server's schema, fuzzed; the problems found (empty when none)."""
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    problems: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 3, operations  # predict, batch predict, health at least
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            check(server, key, operation, mode, problems)
    return sorted(set(problems))


def test_fuzzing_a_served_faq_chatbot_finds_no_5xx_no_slow_answer_and_only_one_sentence_errors(served):
    assert fuzz(served, served.key) == []
