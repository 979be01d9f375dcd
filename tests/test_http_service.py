"""`study serve` in a subprocess on a free port: concurrent requests get the batch CLI's answers, every refused
input gets a 4xx naming its field, /metrics counts what happened, and SIGTERM finishes the open requests."""

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest

from study.serve import recommend
from tests.test_export import ROOT, make_artifact
from tests.test_saved_model import generated_requests

CONCURRENT = 50


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``study serve`` in a subprocess; ``url`` once /readyz answers 200."""

    def __init__(self, artifact_dir, log_path, *flags):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "study.cli", "serve", f"--artifact={artifact_dir}", f"--port={self.port}", *flags],
            cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu"), stdout=self.log,
            stderr=subprocess.STDOUT)
        deadline = time.time() + 240
        while time.time() < deadline:
            assert self.process.poll() is None, open(log_path).read()
            try:
                if httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"study serve was not ready in 240 s: {open(log_path).read()}")

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=60)
        self.log.close()


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    return make_artifact(str(tmp_path_factory.mktemp("model")), "study")[2]


@pytest.fixture(scope="module")
def server(artifact, tmp_path_factory):
    """One server for the module (the last test stops it). A row waits up to 2 s for a batch of 16 to fill,
    so that requests are still queued when the shutdown test sends SIGTERM."""
    server = Server(artifact, tmp_path_factory.mktemp("log") / "serve.log", "--max_batch_size=16",
                    "--max_wait_ms=2000", "--max_body_bytes=20000", "--max_events=30", "--max_students=8")
    yield server
    server.stop()


async def post_all(url, bodies):
    async with httpx.AsyncClient(timeout=120) as client:
        return await asyncio.gather(*(client.post(f"{url}/v1/recommend", json=body) for body in bodies))


def batch_cli_responses(artifact_dir, requests, tmp_path, k):
    requests_path, responses_path = tmp_path / "requests.json", tmp_path / "responses.json"
    requests_path.write_text(json.dumps(requests))
    recommend.recommend_from_file(artifact_dir, str(requests_path), k, str(responses_path))
    return json.loads(responses_path.read_text())["responses"]


def test_concurrent_requests_get_the_batch_cli_answers_in_micro_batches(server, artifact, tmp_path):
    requests = generated_requests(CONCURRENT + 8, seed=5)
    expected = batch_cli_responses(artifact, requests, tmp_path, k=4)
    # 50 one-student requests at once, and one request of the other 8 students (the --max_students limit).
    bodies = [{"students": [request], "k": 4} for request in requests[:CONCURRENT]]
    bodies.append({"students": requests[CONCURRENT:], "k": 4})
    replies = asyncio.run(post_all(server.url, bodies))
    assert [reply.status_code for reply in replies] == [200] * len(bodies)
    served = [answer for reply in replies for answer in reply.json()["responses"]]
    assert [answer["id"] for answer in served] == [response["id"] for response in expected]
    for answer, response in zip(served, expected):
        assert [r["item_id"] for r in answer["recommendations"]] == [r["item_id"] for r in response["recommendations"]]
        np.testing.assert_allclose([r["score"] for r in answer["recommendations"]],
                                   [r["score"] for r in response["recommendations"]], rtol=1e-6)
    # OOV: the generated requests' items "new20".."new22" are not in the vocabulary.
    for answer, request in zip(served, requests):
        events = request["history"] + [e for events in request["classmates"].values() for e in events]
        assert answer["oov_items"] == sum(item.startswith("new") for item, _ in events)

    metrics = httpx.get(f"{server.url}/metrics").text
    values = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
              if line and not line.startswith("#")}
    assert values["study_serve_rows_total"] >= CONCURRENT + 8
    assert values["study_serve_batch_size_sum"] == values["study_serve_rows_total"]
    assert values["study_serve_batch_size_count"] < CONCURRENT  # rows were scored together, not one by one
    assert values['study_serve_requests_total{code="200"}'] >= len(bodies)
    assert values["study_serve_request_latency_seconds_count"] >= len(bodies)
    assert values["study_serve_oov_items_total"] >= sum(answer["oov_items"] for answer in served)


HISTORY = [["b1", 1000], ["b2", 1100]]
REFUSED = [  # (body, status, field)
    ({"students": [{"history": HISTORY, "colour": "red"}]}, 422, "students.0.colour"),
    ({"students": [{"history": HISTORY}], "top": 3}, 422, "top"),
    ({"students": [{"history": [["b1", "noon"]]}]}, 422, "students.0.history.0.1"),
    ({"students": [{"history": [["b1", 1.5]]}]}, 422, "students.0.history.0.1"),
    ({"students": [{"history": HISTORY, "grade": "5"}]}, 422, "students.0.grade"),
    ({"students": [{"history": "b1"}]}, 422, "students.0.history"),
    ({"students": [{"classmates": {}}]}, 422, "students.0.history"),
    ({"students": []}, 422, "students"),
    ({"students": [{"history": HISTORY}] * 9}, 422, "students"),
    ({"students": [{"history": [["b1", t] for t in range(31)]}]}, 422, "students.0.history"),
    ({"students": [{"history": HISTORY, "classmates": {"c": [["b1", t] for t in range(31)]}}]}, 422,
     "students.0.classmates.c"),
    ({"students": [{"history": HISTORY}], "k": 0}, 422, "k"),
    ({"students": [{"history": HISTORY}], "k": 9}, 422, "k"),
    ({"students": [{"history": HISTORY, "k": 100}]}, 422, "students.0.k"),
    ({"students": [{"history": HISTORY, "grade": 13}]}, 422, "students.0.grade"),
    ({"students": [{"history": HISTORY, "query_time": 10}]}, 422, "students.0"),
    ({"students": [{"history": HISTORY, "exclude": ["x" * 30000]}]}, 413, "body"),
]


@pytest.mark.parametrize("body, status, field", REFUSED)
def test_refused_input_gets_a_4xx_naming_the_field(server, body, status, field):
    reply = httpx.post(f"{server.url}/v1/recommend", json=body, timeout=60)
    assert reply.status_code == status, reply.text
    errors = reply.json()["errors"]
    assert field in [error["field"] for error in errors], errors
    assert all(error["message"] for error in errors)


def test_invalid_json_and_a_streamed_oversized_body_are_refused(server):
    reply = httpx.post(f"{server.url}/v1/recommend", content=b'{"students": [', timeout=60)
    assert reply.status_code == 400 and reply.json()["errors"][0]["field"] == "body"

    def chunks():  # no Content-Length: the limit applies to the bytes read
        yield b'{"students": [{"history": [], "exclude": ["'
        for _ in range(30):
            yield b"x" * 1000
        yield b'"]}]}'

    reply = httpx.post(f"{server.url}/v1/recommend", content=chunks(), timeout=60)
    assert reply.status_code == 413 and reply.json()["errors"][0]["field"] == "body"
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}


def test_sigterm_finishes_the_requests_in_flight(server, artifact, tmp_path):
    """Runs last: it stops the module's server."""
    requests = generated_requests(6, seed=9)
    expected = batch_cli_responses(artifact, requests, tmp_path, k=3)

    async def send_then_terminate():
        async with httpx.AsyncClient(timeout=60) as client:
            posts = [asyncio.create_task(client.post(f"{server.url}/v1/recommend",
                                                     json={"students": [request], "k": 3}))
                     for request in requests]
            await asyncio.sleep(0.7)
            assert not any(post.done() for post in posts)  # 6 rows wait for a batch of 16
            server.process.send_signal(signal.SIGTERM)
            return await asyncio.gather(*posts)

    replies = asyncio.run(send_then_terminate())
    assert [reply.status_code for reply in replies] == [200] * len(requests)
    served = [reply.json()["responses"][0] for reply in replies]
    assert [[r["item_id"] for r in a["recommendations"]] for a in served] == \
        [[r["item_id"] for r in e["recommendations"]] for e in expected]
    # uvicorn re-raises the signal once it has shut down, so the exit is the conventional one of SIGTERM.
    assert server.process.wait(timeout=60) in (0, -signal.SIGTERM)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.url}/healthz", timeout=5)
