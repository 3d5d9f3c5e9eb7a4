"""A tracking server that is not there, not MLflow, or does not answer: a one-line error within seconds, and
SIGTERM ends a process stuck in a tracking call at once. Everything listens on 127.0.0.1 in the test."""

from __future__ import annotations

import http.server
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from suite.cli import main
from suite.tracking import PROBE_TIMEOUT_S

QUICKSTART = Path(__file__).resolve().parents[2] / "experiments" / "quickstart.toml"
TRAIN = ["train", "--algo", "iql", "--offline-steps", "20", "--online-steps", "0"]


class SilentServer:
    """Accepts connections and reads requests; answers MLflow's start-up probe only when `answer_probe`, and
    never answers anything else."""

    def __init__(self, answer_probe: bool) -> None:
        self.answer_probe = answer_probe
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.uri = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.hanging = threading.Event()  # a request is being left unanswered
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            try:
                chunk = conn.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            data += chunk
        if self.answer_probe and data.startswith(b"GET /api/2.0/mlflow/experiments/search"):
            body = b'{"experiments": []}'
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
            conn.close()
        else:
            self.hanging.set()

    def close(self) -> None:
        self.sock.close()
        for conn in self.conns:
            conn.close()


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer(answer_probe=False)
    yield server
    server.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


def one_line_error(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[str, float]:
    start = time.monotonic()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("baq: error: ") and err.count("\n") == 1, err
    return err, time.monotonic() - start


def test_unreachable_uri_is_one_line_within_seconds(capsys: pytest.CaptureFixture) -> None:
    uri = f"http://127.0.0.1:{closed_port()}"
    err, took = one_line_error([*TRAIN, "--tracking-uri", uri], capsys)
    assert uri in err and "cannot be reached" in err and "`mlflow server`" in err
    assert took < PROBE_TIMEOUT_S + 1


def test_server_that_never_answers_is_one_line_within_seconds(
    silent: SilentServer, capsys: pytest.CaptureFixture
) -> None:
    err, took = one_line_error([*TRAIN, "--tracking-uri", silent.uri], capsys)
    assert silent.hanging.is_set()  # the request reached the server and was left unanswered
    assert f"{silent.uri} accepts connections but did not answer within 3 s" in err
    assert took < 2 * PROBE_TIMEOUT_S + 1


def test_http_server_that_is_not_mlflow_is_one_line(capsys: pytest.CaptureFixture) -> None:
    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<html>a wiki</html>")

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        uri = f"http://127.0.0.1:{httpd.server_address[1]}"
        err, _ = one_line_error(["run", str(QUICKSTART), "--tracking-uri", uri], capsys)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert f"{uri} answers, but not as an MLflow tracking server (HTTP 200" in err


def test_sigterm_inside_a_hanging_tracking_call_ends_the_process(tiny_dataset_id: str, tmp_path: Path) -> None:
    """The server answers the start-up probe, then leaves the run's first real request (finding the
    experiment) unanswered: MLflow would wait 3 × 10 s; SIGTERM must end the process at once."""
    server = SilentServer(answer_probe=True)
    argv = [sys.executable, "-m", "suite.cli", *TRAIN, "--dataset", tiny_dataset_id,
            "--tracking-uri", server.uri, "--run-dir", str(tmp_path / "run")]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.hanging.wait(120), proc.communicate(timeout=5)
        time.sleep(0.5)  # well inside the call, which lasts 10 s before its first retry
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        took = time.monotonic() - sent
    finally:
        proc.kill()
        server.close()
    assert proc.returncode == 130, err
    # At once: well before the call's own 10 s timeout (30 s with MLflow's retries); the margin is for the
    # process's exit on a loaded machine (3.2 s seen under a full test run beside two trainings).
    assert took < 8, took
    assert err.strip().splitlines()[-1] == "baq: interrupted"
