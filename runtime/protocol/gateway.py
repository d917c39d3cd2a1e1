"""The coordinator's gateway to services hosted on providers' machines (`aib serve SERVICE --on-providers`).

Why a gateway and not usage batches signed by the hosts: a host's word about how many calls it answered cannot be
checked (it can invent calls, or replay real ones), and checking API keys on the host would hand every key to a
stranger. So the client calls the coordinator, which checks the key as for any service (runtime/serving.py), sends
the inputs to a host that serves the service, and meters the call only once an answer is back: every metered call
is one the coordinator itself forwarded and saw answered. The gateway keeps the bundle loaded too: it answers when
no host can (no call is lost), and it re-runs a random share of the calls (`audit_rate`) to check the host's
answers; a host caught answering wrong is taken off the service, loses reputation and is not paid for the calls of
it not yet paid.
"""

from __future__ import annotations

import math
import random
import threading
from dataclasses import dataclass
from typing import Any

import httpx

from runtime.db import session_factory
from runtime.metering import HostBilling
from runtime.protocol import hosting as H
from runtime.protocol.host import answer, pack_items

REFRESH_S = 2.0  # how often the gateway places the service on hosts and reads which answer
FAILURES_TO_DROP = 3  # calls in a row a host fails (unreachable, errors, time-outs) before it is taken off
TIMEOUT = httpx.Timeout(30.0, connect=3.0)
ABS_TOL, REL_TOL = 1e-3, 1e-3  # how far a host's numbers may be from the gateway's (other hardware, other kernels)


@dataclass
class Route:
    """A hosting the gateway may call."""

    hosting_id: int
    host_id: str
    url: str
    secret: str
    call_price_wei: int
    failures: int = 0


def same_answer(a: Any, b: Any) -> bool:
    """Whether a host's answer equals the gateway's own: the same structure, strings and labels, and numbers within
    ABS_TOL / REL_TOL."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(float(a), float(b), rel_tol=REL_TOL, abs_tol=ABS_TOL)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_answer(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same_answer(x, y) for x, y in zip(a, b, strict=True))
    return a == b


class HostedPredictor:
    """A predictor whose answers come from the hosts of the service (see the module docstring); the request and
    response models, checks and batching are the local bundle's."""

    prepare = None  # the host decodes the inputs (the gateway does it only for its own answers)

    def __init__(self, service_id: str, local: Any, *, replicas: int = 1, audit_rate: float = 0.05,
                 rng: random.Random | None = None, say: Any = None) -> None:  # fmt: skip
        self.service_id, self.local, self.replicas, self.audit_rate = service_id, local, replicas, audit_rate
        self.Request, self.Response, self.BatchRequest = local.Request, local.Response, local.BatchRequest
        self.manifest = local.manifest
        self.accepts_file = getattr(local, "accepts_file", False)
        self.rng = rng or random.Random()
        self.say = say or (lambda line: None)
        self.http = httpx.Client(timeout=TIMEOUT)
        self.routes: list[Route] = []
        self.turn = 0
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None

    def items_from_batch(self, batch: Any) -> list[Any]:
        return self.local.items_from_batch(batch)

    def check_item(self, item: Any) -> str | None:
        return self.local.check_item(item)

    def predict(self, items: list[Any]) -> list[Any]:
        return self.predict_served(items)[0]

    def start(self) -> HostedPredictor:
        """Keep the service placed on `replicas` hosts and the routes fresh, in a thread of its own (placing seals
        the bundle and may register a host's asset on chain: never on a call's path)."""
        try:
            self.refresh()
        except Exception as exc:  # the placement thread tries again; calls are answered here meanwhile
            self.say(f"placing service {self.service_id} on hosts failed this time: {exc}")
        self.thread = threading.Thread(target=self._keep_placed, name="gateway-placement", daemon=True)
        self.thread.start()
        return self

    def _keep_placed(self) -> None:
        while not self.stopped.wait(REFRESH_S):
            try:
                self.refresh()
            except Exception as exc:  # a database or chain hiccup: the next round tries again; calls go on
                self.say(f"placing service {self.service_id} on hosts failed this time: {exc}")

    def refresh(self) -> None:
        """Place the service on more hosts if fewer than `replicas` are live, and read which answer now."""
        from runtime.db import Service

        with session_factory().begin() as s:
            H.place(s, s.get(Service, self.service_id), self.replicas)
        with session_factory()() as s:
            pairs = H.ready_hostings(s, self.service_id)
        with self.lock:
            known = {(r.hosting_id, r.secret): r for r in self.routes}  # a hosting placed again has a new secret
            fresh = [Route(h.id, host.id, host.url, h.secret, int(host.call_price_wei)) for h, host in pairs]
            self.routes = [known.get((r.hosting_id, r.secret), r) for r in fresh]

    def _routes(self) -> list[Route]:
        """The routes, starting with the next one in turn (calls spread over the hosts)."""
        with self.lock:
            if not self.routes:
                return []
            self.turn = (self.turn + 1) % len(self.routes)
            return self.routes[self.turn :] + self.routes[: self.turn]

    def predict_served(self, items: list[Any]) -> tuple[list[Any], HostBilling | None]:
        """The answers, and the host that gave them (None: the gateway answered itself; nothing is owed to a host)."""
        for route in self._routes():
            results = self._ask(route, items)
            if results is None:
                continue
            if self.rng.random() < self.audit_rate:
                own = [self.Response.model_validate(x).model_dump() for x in answer(self.local, items)]
                if not same_answer(results, own):
                    self._drop(route, "its answers differ from the service's own model's", caught=True)
                    return own, None  # the gateway's own answers; no host is owed for them
            route.failures = 0
            return results, HostBilling(route.host_id, route.call_price_wei)
        return answer(self.local, items), None

    def _ask(self, route: Route, items: list[Any]) -> list[Any] | None:
        """The host's answers, checked against the response model; None when it failed (counted)."""
        try:
            r = self.http.post(f"{route.url}/v1/hosted/{self.service_id}/predict",
                               json={"items": pack_items(items)},
                               headers={"Authorization": f"Bearer {route.secret}"})  # fmt: skip
        except httpx.HTTPError as exc:
            return self._failed(route, f"unreachable ({type(exc).__name__})")
        if r.status_code == 422:  # the gateway does not take a host's word that an input is bad: it answers itself
            return None
        if r.status_code != 200:
            return self._failed(route, f"answered HTTP {r.status_code}")
        try:
            results = r.json()["results"]
            if not isinstance(results, list) or len(results) != len(items):
                raise ValueError("not one answer per input")
            return [self.Response.model_validate(x).model_dump() for x in results]
        except (ValueError, KeyError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
            self._drop(route, f"its answer is not the service's response ({str(exc)[:80]})", caught=True)
            return None

    def _failed(self, route: Route, why: str) -> None:
        route.failures += 1
        if route.failures >= FAILURES_TO_DROP:
            self._drop(route, f"{why} {route.failures} calls in a row", caught=False)
        return None

    def _drop(self, route: Route, why: str, *, caught: bool) -> None:
        with session_factory().begin() as s:
            forfeited = H.drop(s, route.hosting_id, why, caught=caught)
        with self.lock:
            self.routes = [r for r in self.routes if r.hosting_id != route.hosting_id]
        extra = f"; {forfeited} unpaid call(s) of it are not paid" if caught else ""
        self.say(f"host {route.host_id} was taken off service {self.service_id}: {why}{extra}")

    def close(self) -> None:
        """Stop placing and close the connections."""
        self.stopped.set()
        if self.thread is not None:
            self.thread.join(timeout=10)
        self.http.close()


__all__ = ["HostedPredictor", "Route", "same_answer"]
