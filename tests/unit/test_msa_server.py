"""msa.mode server against a local fake ColabFold MSA server (no network): the ticket
protocol, rate limiting, retries, the cache, and a sequence the server rejects."""

import io
import json
import tarfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from foldcp.config import validate_config
from foldcp.errors import FoldcpError
from foldcp.msa import write_msa
from foldcp.msa.a3m import read_a3m

QUERY = "MKVLAGWDE"
UNIREF = (">101\nMKVLAGWDE\n>UniRef100_A1\t60\t0.9\nMKVLSGWDE\n"
          ">UniRef100_A2 TaxID=10090\nMRVlkLAGWDE\n\x00")
ENV = ">101\nMKVLAGWDE\n>MGYP0001\nMKILAGWDE\n\x00"


def archive(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class FakeColabFold:
    """A scripted server: each endpoint answers from its list, the last answer repeats."""

    def __init__(self, submit, status, download):
        self.script = {"submit": list(submit), "status": list(status), "download": list(download)}
        self.log = []  # (time, method, path, form, user agent)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def answer(self, kind):
                answers = server.script[kind]
                code, body = answers.pop(0) if len(answers) > 1 else answers[0]
                if isinstance(body, dict):
                    body = json.dumps(body).encode()
                self.send_response(code)
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                server.log.append((time.time(), "POST", self.path, form, self.headers["User-Agent"]))
                self.answer("submit")

            def do_GET(self):
                server.log.append((time.time(), "GET", self.path, None, self.headers["User-Agent"]))
                self.answer("download" if self.path.startswith("/result/download/") else "status")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fake():
    servers = []

    def start(submit, status, download):
        servers.append(FakeColabFold(submit, status, download))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def config_for(tmp_path, url, **server):
    (tmp_path / "p.fasta").write_text(f">pepA\n{QUERY}\n")
    return validate_config({
        "proteins": str(tmp_path / "p.fasta"), "candidates": {"mode": "all_vs_all"},
        "msa": {"mode": "server", "cache_dir": str(tmp_path / "cache"),
                "server": {"url": url, "min_interval_s": 0.05, "poll_interval_s": 0.01,
                           "max_retries": 3, **server}},
    })


GOOD = dict(
    submit=[(200, {"status": "RATELIMIT"}), (200, {"id": "T1", "status": "PENDING"})],
    status=[(200, {"id": "T1", "status": "RUNNING"}), (200, {"id": "T1", "status": "COMPLETE"})],
    download=[(503, b"busy"), (200, archive({"uniref.a3m": UNIREF,
                                             "bfd.mgnify30.metaeuk30.smag30.a3m": ENV,
                                             "pdb70.m8": ""}))],
)


def test_ticket_protocol_rate_limit_retries_and_cache(tmp_path, fake):
    server = fake(**GOOD)
    config = config_for(tmp_path, server.url)
    record = write_msa(config, "pepA", tmp_path / "out" / "pepA.a3m")
    msa = read_a3m(tmp_path / "out" / "pepA.a3m")
    # UniRef rows, then the environmental ones without their copy of the query
    assert [r.sequence for r in msa.rows] == ["MKVLAGWDE", "MKVLSGWDE", "MRVlkLAGWDE", "MKILAGWDE"]
    assert msa.rows[0].header == "pepA" and msa.rows[2].key == 10090
    assert (record["mode"], record["depth"], record["cached"]) == ("server", 4, False)
    assert record["fallback"] is False
    calls = [(method, path) for _, method, path, _, _ in server.log]
    assert calls == [("POST", "/ticket/msa"), ("POST", "/ticket/msa"), ("GET", "/ticket/T1"),
                     ("GET", "/ticket/T1"), ("GET", "/result/download/T1"),
                     ("GET", "/result/download/T1")]
    form = server.log[0][3]
    assert form == {"q": [f">101\n{QUERY}\n"], "mode": ["env"]}
    assert all(agent.startswith("foldcp/") for *_, agent in server.log)
    times = [t for t, *_ in server.log]
    assert min(b - a for a, b in zip(times, times[1:])) >= 0.045  # min_interval_s apart
    # the same sequence again (another screen): from the cache, no request
    record = write_msa(config, "pepA", tmp_path / "other" / "pepA.a3m")
    assert record["cached"] is True and len(server.log) == 6
    assert (tmp_path / "other" / "pepA.a3m").read_text() == (tmp_path / "out" / "pepA.a3m").read_text()


def test_without_environmental_databases(tmp_path, fake):
    server = fake(**GOOD)
    config = config_for(tmp_path, server.url, use_env=False, use_filter=False)
    record = write_msa(config, "pepA", tmp_path / "pepA.a3m")
    assert server.log[0][3]["mode"] == ["all-nofilter"] and record["depth"] == 3


def test_rejected_sequence_is_missing_error_or_fallback(tmp_path, fake):
    server = fake(submit=[(200, {"status": "ERROR"})], status=[(200, {})], download=[(200, b"")])
    config = config_for(tmp_path, server.url)
    with pytest.raises(FoldcpError, match="no MSA for protein pepA: .*status ERROR"):
        write_msa(config, "pepA", tmp_path / "pepA.a3m")
    config["msa"]["missing"] = "single_sequence"
    record = write_msa(config, "pepA", tmp_path / "pepA.a3m")
    assert record["fallback"] is True and record["depth"] == 1 and "ERROR" in record["reason"]
    assert (tmp_path / "pepA.a3m").read_text() == f">pepA\n{QUERY}\n"


def test_gives_up_after_max_retries(tmp_path, fake):
    server = fake(submit=[(503, b"down")], status=[(200, {})], download=[(200, b"")])
    config = config_for(tmp_path, server.url)
    config["msa"]["missing"] = "single_sequence"
    record = write_msa(config, "pepA", tmp_path / "pepA.a3m")
    assert record["fallback"] is True and "gave up after 4 tries" in record["reason"]
    assert len(server.log) == 4  # one try and max_retries (3) more
