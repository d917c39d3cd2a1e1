"""Attacks on a served API from a stranger with a socket: what an unauthenticated or oversized body costs us.

Raw sockets, so the test controls exactly how much is sent and when: a server that reads the body before
checking the key, or that reads a chunked body to its end, shows it here as bytes accepted and time taken.
"""

from __future__ import annotations

import resource
import socket
import time

CHUNK = b"x" * 65_536
TOTAL = 64 * 1024 * 1024


def _chunked_post(served, key: str | None) -> tuple[int, bytes, int, float]:
    """POST a 64 MB chunked body until the server answers; (status, body, bytes sent, seconds to the answer)."""
    host, port = "127.0.0.1", served.port
    head = f"POST /v1/predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
    head += "Transfer-Encoding: chunked\r\n"
    if key:
        head += f"X-API-Key: {key}\r\n"
    sent, started = 0, time.monotonic()
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall((head + "\r\n").encode())
        sock.setblocking(False)
        answer = b""
        while sent < TOTAL:
            try:
                answer += sock.recv(65_536)
            except BlockingIOError:
                pass
            except ConnectionResetError:
                break
            if b"\r\n\r\n" in answer:
                break
            try:
                sock.sendall(f"{len(CHUNK):x}\r\n".encode() + CHUNK + b"\r\n")
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                time.sleep(0.001)
                continue
            sent += len(CHUNK)
        sock.setblocking(True)
        while b"\r\n\r\n" not in answer:
            more = sock.recv(65_536)
            if not more:
                break
            answer += more
        elapsed = time.monotonic() - started
        # The server writes the head and the body separately: read the body to its Content-Length (or the close).
        head_part, _, body = answer.partition(b"\r\n\r\n")
        length = _content_length(head_part)
        while length is not None and len(body) < length:
            try:
                more = sock.recv(65_536)
            except ConnectionResetError:
                break
            if not more:
                break
            body += more
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1") else 0
    return status, body, sent, elapsed


def _content_length(head: bytes) -> int | None:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return None


def test_a_chunked_64_mb_body_without_a_key_is_refused_401_before_it_is_read(served):
    status, body, sent, elapsed = _chunked_post(served, key=None)
    assert status == 401 and b"missing API key" in body
    # Answered at once: what was sent meanwhile sits in loopback socket buffers (a few MB), far from 64 MB.
    assert sent <= TOTAL // 4 and elapsed < 2.0


def test_a_chunked_64_mb_body_with_a_key_is_refused_413_after_the_limit_with_bounded_memory(served):
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB; the server runs in this process
    status, body, sent, elapsed = _chunked_post(served, key=served.key)
    assert status == 413 and b"the limit is 1000000" in body
    assert sent <= TOTAL // 4 and elapsed < 5.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before < 64 * 1024


def test_invalid_json_without_a_key_is_401_not_422(served):
    import httpx

    r = httpx.post(f"{served.url}/v1/predict", content=b'{"text":', headers={"Content-Type": "application/json"})
    assert (r.status_code, r.json()) == (401, {"error": "missing API key: send it in the X-API-Key header"})


def _usage_rows(service_id: str) -> int:
    from sqlalchemy import func, select

    from runtime.db import Usage, session_factory

    with session_factory()() as s:
        return s.scalar(select(func.count()).select_from(Usage).where(Usage.service_id == service_id))


def test_a_retry_with_the_same_idempotency_key_is_answered_and_billed_once(served):
    import httpx

    before = _usage_rows(served.service_id)
    headers = {"X-API-Key": served.key, "Idempotency-Key": "checkout-7f3a"}
    first = httpx.post(f"{served.url}/v1/predict", json={"text": "Do you take PayPal?"}, headers=headers)
    retry = httpx.post(f"{served.url}/v1/predict", json={"text": "Do you take PayPal?"}, headers=headers)
    assert first.status_code == retry.status_code == 200 and first.json() == retry.json()
    assert _usage_rows(served.service_id) == before + 1
    plain = {"X-API-Key": served.key}
    other = httpx.post(f"{served.url}/v1/predict", json={"text": "Do you take PayPal?"}, headers=plain)
    assert other.status_code == 200 and _usage_rows(served.service_id) == before + 2


def test_with_the_usage_writer_gone_calls_get_503_at_once_and_nothing_is_served_unbilled(trained):
    import httpx

    from runtime.db import session_factory
    from runtime.keys import create_key
    from runtime.serving import create_app
    from tests.integration.conftest import ServerThread

    with session_factory()() as s:
        key, _ = create_key(s, trained["service_id"])
    app = create_app(trained["service_id"])
    with ServerThread(app) as server:
        app.state.writer.stop()  # as if the writer thread had died
        before = _usage_rows(trained["service_id"])
        started = time.monotonic()
        r = httpx.post(f"{server.url}/v1/predict", json={"text": "hi"}, headers={"X-API-Key": key}, timeout=30)
        assert r.status_code == 503 and "usage cannot be recorded" in r.json()["error"]
        assert time.monotonic() - started < 1.0 and _usage_rows(trained["service_id"]) == before
