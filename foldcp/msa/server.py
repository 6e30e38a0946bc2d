"""``msa.mode: server``: a client of a ColabFold-compatible MSA API.

The protocol (that of api.colabfold.com and of self-hosted ColabFold MSA servers):

1. ``POST {url}/ticket/msa`` with form fields ``q`` (a FASTA query, here one sequence named
   ``101``) and ``mode`` (``env`` or ``all``, ``-nofilter`` appended without filtering)
   answers JSON ``{"id": ..., "status": ...}``.
2. ``GET {url}/ticket/{id}`` until the status is ``COMPLETE`` (``PENDING``/``RUNNING``: wait).
3. ``GET {url}/result/download/{id}``: a tar.gz holding ``uniref.a3m`` and, with ``env``,
   ``bfd.mgnify30.metaeuk30.smag30.a3m``. The MSA is the UniRef rows followed by the
   environmental rows (their copy of the query dropped).

Politeness: at most one request per ``min_interval_s`` from all foldcp processes sharing the
cache folder (a lock file there holds the time of the last request), status polls every
``poll_interval_s``, a ``User-Agent`` naming foldcp. ``RATELIMIT``/``UNKNOWN`` answers,
HTTP 429 and 5xx, and connection errors are retried with doubling waits (``max_retries``
times in a row); ``MAINTENANCE`` too. ``ERROR`` (the server rejected the sequence), other
HTTP errors, exhausted retries and ``timeout_s`` raise `ServerError`. Results are cached
(`foldcp.msa.cache`) by URL, mode and sequence, so a protein is fetched once.

Hits from the ColabFold databases carry no species in their headers, so server MSAs are
unpaired unless the server's headers have ``TaxID=``/``OX=``.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from foldcp import __version__
from foldcp.errors import FoldcpError

UNIREF = "uniref.a3m"
ENV = "bfd.mgnify30.metaeuk30.smag30.a3m"
QUERY_NAME = "101"


class ServerError(FoldcpError):
    """The MSA server gave no MSA for a sequence."""


class _Retry(Exception):
    """A transient failure worth another try."""


def server_mode(settings: dict) -> str:
    mode = "env" if settings["use_env"] else "all"
    return mode if settings["use_filter"] else f"{mode}-nofilter"


class RateLimiter:
    """At most one request per `min_interval` seconds across processes sharing `lock_path`."""

    def __init__(self, lock_path: str | Path, min_interval: float) -> None:
        self.lock_path = Path(lock_path)
        self.min_interval = min_interval

    def wait(self) -> None:
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                handle.seek(0)
                text = handle.read().strip()
                last = float(text) if text else 0.0
                delay = last + self.min_interval - time.time()
                if delay > 0:
                    time.sleep(delay)
                handle.seek(0)
                handle.truncate()
                handle.write(f"{time.time():.6f}")
                handle.flush()
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


class ColabFoldClient:
    def __init__(self, settings: dict, lock_path: str | Path, sleep=time.sleep) -> None:
        self.url = settings["url"].rstrip("/")
        self.mode = server_mode(settings)
        self.settings = settings
        self.limiter = RateLimiter(lock_path, settings["min_interval_s"])
        self.sleep = sleep
        self.requests = 0  # made by this client (tests count them)

    # -- HTTP with retries ---------------------------------------------------------------
    def _request(self, path: str, data: dict | None = None) -> bytes:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        request = urllib.request.Request(
            f"{self.url}/{path}", data=body,
            headers={"User-Agent": f"foldcp/{__version__} (MSA client)"},
        )
        self.limiter.wait()
        self.requests += 1
        try:
            with urllib.request.urlopen(request, timeout=self.settings["request_timeout_s"]) as r:
                return r.read()
        except urllib.error.HTTPError as exc:
            if exc.code == 429 or exc.code >= 500:
                raise _Retry(f"HTTP {exc.code} from {request.full_url}") from None
            raise ServerError(f"HTTP {exc.code} from {request.full_url}: {exc.reason}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise _Retry(f"cannot reach {request.full_url}: {exc}") from None

    def _json(self, path: str, data: dict | None = None) -> dict:
        raw = self._request(path, data)
        try:
            reply = json.loads(raw)
        except ValueError:
            raise _Retry(f"{self.url}/{path} did not answer JSON: {raw[:200]!r}") from None
        status = reply.get("status")
        if status in ("RATELIMIT", "UNKNOWN", "MAINTENANCE"):
            raise _Retry(f"server status {status}")
        if status == "ERROR":
            raise ServerError(f"{self.url} rejected the request (status ERROR)")
        return reply

    def _with_retries(self, call, deadline: float):
        wait = self.settings["min_interval_s"] or 1.0
        failures = 0
        while True:
            try:
                return call()
            except _Retry as exc:
                failures += 1
                if failures > self.settings["max_retries"]:
                    raise ServerError(f"{exc}; gave up after {failures} tries") from None
                if time.time() + wait > deadline:
                    raise ServerError(f"{exc}; no answer within timeout_s") from None
                self.sleep(wait)
                wait = min(wait * 2, 300.0)

    # -- the protocol --------------------------------------------------------------------
    def fetch(self, sequence: str) -> str:
        """The A3M text for one sequence (query row named 101)."""
        deadline = time.time() + self.settings["timeout_s"]
        query = f">{QUERY_NAME}\n{sequence}\n"
        reply = self._with_retries(
            lambda: self._json("ticket/msa", {"q": query, "mode": self.mode}), deadline)
        ticket = reply.get("id")
        if not ticket:
            raise ServerError(f"{self.url}/ticket/msa answered without a ticket id: {reply}")
        while reply.get("status") != "COMPLETE":
            if reply.get("status") not in ("PENDING", "RUNNING"):
                raise ServerError(f"unexpected server status {reply.get('status')!r}")
            if time.time() > deadline:
                raise ServerError(f"ticket {ticket} not complete within timeout_s")
            self.sleep(self.settings["poll_interval_s"])
            reply = self._with_retries(lambda: self._json(f"ticket/{ticket}"), deadline)
        archive = self._with_retries(lambda: self._request(f"result/download/{ticket}"), deadline)
        return self.unpack(archive)

    def unpack(self, archive: bytes) -> str:
        try:
            with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
                files = {m.name.split("/")[-1]: m for m in tar.getmembers() if m.isfile()}
                texts = {}
                for name in (UNIREF, ENV):
                    if name in files:
                        with contextlib.closing(tar.extractfile(files[name])) as f:
                            texts[name] = f.read().decode().replace("\x00", "")
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise ServerError(f"the result archive from {self.url} is not a tar.gz: {exc}") from None
        if UNIREF not in texts:
            raise ServerError(f"the result archive from {self.url} has no {UNIREF}")
        text = texts[UNIREF].rstrip("\n") + "\n"
        if self.settings["use_env"] and ENV in texts:
            records = texts[ENV].split(">")[1:]
            text += "".join(">" + record for record in records[1:])  # drop its query copy
        return text
