"""Load test of `study serve`: requests/s and latency percentiles with and without micro-batching, and the
server's resident memory over a long run.

    python benchmarks/serving_load.py [--artifact=runs/smoke/export/study] [--concurrency=1,8,64] \\
        [--duration_s=20] [--max_batch_size=64] [--max_wait_ms=2] [--long_run_s=600]

For each mode (``batched``: ``--max_batch_size`` / ``--max_wait_ms``; ``one_at_a_time``: ``--max_batch_size=1``)
it starts ``study serve`` in a subprocess (niced), waits for ``/readyz``, and for each concurrency C runs C
closed-loop clients (asyncio, one HTTP/1.1 keep-alive connection each: ``KeepAliveConnection``) for
``--duration_s`` seconds after a short warm-up, each client posting one student per request (a generated
STUDY request: 30 events of history, 5 classmates of 10 events, items drawn from the artifact's vocabulary). Reported per point: requests,
failures (any non-200 or transport error), requests/s, latency p50 / p95 / p99 (ms), the server's mean batch
size and the busy share of its scoring thread (from its ``/metrics``), its CPU time per request, and the
1-minute load average before and after. Then, unless
``--long_run_s=0``, a batched server runs at the largest concurrency for ``--long_run_s`` seconds while its
RSS is sampled every ``--rss_every_s`` seconds (start / end / peak and the samples). The client runs on the
same machine as the server and takes CPU from it; the figures are for this machine as it was.

Prints and saves ``benchmarks/results/serving_load.json`` (``--output`` for elsewhere); keys ``sweep`` and
``long_run`` are written separately.
"""

import asyncio
import json
import os
import socket
import subprocess
import sys
import time

from absl import app, flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks import results_io  # noqa: E402

flags.DEFINE_string("artifact", "runs/smoke/export/study", "serving artifact (study export)")
flags.DEFINE_list("concurrency", ["1", "8", "64"], "concurrent clients per point")
flags.DEFINE_float("duration_s", 20.0, "measured seconds per point (0: skip the sweep)")
flags.DEFINE_float("warmup_s", 3.0, "unmeasured seconds before each point")
flags.DEFINE_integer("max_batch_size", 64, "the batched server's --max_batch_size")
flags.DEFINE_float("max_wait_ms", 2.0, "the batched server's --max_wait_ms")
flags.DEFINE_float("long_run_s", 600.0, "seconds of the RSS run at the largest concurrency (0: skip)")
flags.DEFINE_float("rss_every_s", 5.0, "RSS sampling interval of the long run")
flags.DEFINE_integer("num_requests", 500, "distinct generated requests the clients cycle through")
results_io.define_output_flag("serving_load")
FLAGS = flags.FLAGS


def generated_bodies(artifact: str, count: int, seed: int = 0) -> list[bytes]:
    """``count`` JSON bodies of one STUDY student each, items drawn from the artifact's vocabulary."""
    import numpy as np

    with open(os.path.join(artifact, "vocab.json")) as handle:
        items = json.load(handle)["items"]
    rng = np.random.default_rng(seed)
    bodies = []
    for number in range(count):
        def events(size):
            picked = rng.integers(0, len(items), size)
            times = np.sort(rng.integers(1_600_000_000, 1_600_900_000, size))
            return [[items[i], int(t)] for i, t in zip(picked, times)]

        student = {"id": f"s{number}", "history": events(30), "grade": int(rng.integers(0, 13)),
                   "classmates": {f"c{c}": events(10) for c in range(5)}}
        bodies.append(json.dumps({"students": [student], "k": 10}).encode())
    return bodies


class Server:
    def __init__(self, artifact: str, max_batch_size: int, max_wait_ms: float):
        import httpx

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            ["nice", "-n", "10", sys.executable, "-m", "study.cli", "serve", f"--artifact={artifact}",
             f"--port={self.port}", f"--max_batch_size={max_batch_size}", f"--max_wait_ms={max_wait_ms}"],
            cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO))
        deadline = time.time() + 600
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"study serve exited with {self.process.returncode}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(1)
        raise RuntimeError("study serve was not ready in 600 s")

    def batch_stats(self) -> tuple[float, float, float, float]:
        """(batches, rows, model seconds) scored so far (from /metrics) and the server's CPU seconds."""
        import httpx
        import psutil

        values = {}
        for line in httpx.get(f"{self.url}/metrics", timeout=30).text.splitlines():
            if line.startswith(("study_serve_batch_size_count", "study_serve_batch_size_sum",
                                "study_serve_batch_seconds_sum")):
                name, value = line.rsplit(" ", 1)
                values[name] = float(value)
        process = psutil.Process(self.process.pid)
        cpu = sum(sum(p.cpu_times()[:2]) for p in [process, *process.children(recursive=True)])
        return (values.get("study_serve_batch_size_count", 0.0), values.get("study_serve_batch_size_sum", 0.0),
                values.get("study_serve_batch_seconds_sum", 0.0), cpu)

    def rss_mib(self) -> float:
        """RSS of the server (the python process under nice)."""
        import psutil

        process = psutil.Process(self.process.pid)
        return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)]) / 2**20

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=120)


class KeepAliveConnection:
    """One HTTP/1.1 keep-alive connection posting JSON bodies, on asyncio streams.

    The load generator shares the server's CPUs, so it must cost little: measured on this machine, httpx's
    AsyncClient took 2.4 ms of CPU per request at 8 connections and 14 ms at 64, more than the server's
    own 3 ms; this client takes a fraction of a millisecond."""

    def __init__(self, port: int):
        self.port, self.reader, self.writer = port, None, None

    async def post(self, path: str, body: bytes) -> int:
        """Posts ``body``; returns the status code once the whole response is read."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n%s" % (path.encode(), len(body), body))
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def closed_loop(port: int, bodies: list[bytes], concurrency: int, seconds: float, on_tick=None):
    """``concurrency`` clients posting back to back for ``seconds``; (latencies in s, failures, wall s)."""
    latencies, failures = [], [0]
    stop_at = time.perf_counter() + seconds

    async def client(index: int):
        connection, n = KeepAliveConnection(port), index
        try:
            while time.perf_counter() < stop_at:
                start = time.perf_counter()
                try:
                    ok = await connection.post("/v1/recommend", bodies[n % len(bodies)]) == 200
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    ok = False
                    connection.close()
                    connection = KeepAliveConnection(port)
                if ok:
                    latencies.append(time.perf_counter() - start)
                else:
                    failures[0] += 1
                n += concurrency
        finally:
            connection.close()

    async def ticker():
        while time.perf_counter() < stop_at:
            await asyncio.sleep(FLAGS.rss_every_s)
            on_tick()

    started = time.perf_counter()
    tasks = [client(i) for i in range(concurrency)] + ([ticker()] if on_tick else [])
    await asyncio.gather(*tasks)
    return latencies, failures[0], time.perf_counter() - started


def percentile_ms(values, q) -> float:
    import numpy as np

    return round(float(np.percentile(values, q)) * 1000, 2) if values else float("nan")


def measure(server: Server, bodies, concurrency: int) -> dict:
    asyncio.run(closed_loop(server.port, bodies, concurrency, FLAGS.warmup_s))
    load_before = os.getloadavg()[0]
    batches_before, rows_before, model_s_before, cpu_before = server.batch_stats()
    latencies, failures, wall = asyncio.run(closed_loop(server.port, bodies, concurrency, FLAGS.duration_s))
    batches, rows, model_s, cpu = server.batch_stats()
    point = {"concurrency": concurrency, "requests": len(latencies), "failures": failures,
             "requests_per_s": round(len(latencies) / wall, 1), "p50_ms": percentile_ms(latencies, 50),
             "p95_ms": percentile_ms(latencies, 95), "p99_ms": percentile_ms(latencies, 99),
             "mean_batch_size": round((rows - rows_before) / max(batches - batches_before, 1), 2),
             # Where the server's time goes: its CPU per request, and the share of the wall time its scoring
             # thread was busy (model calls; above 1 when two batches overlap).
             "server_cpu_ms_per_request": round((cpu - cpu_before) / max(len(latencies), 1) * 1000, 2),
             "scoring_busy_fraction": round((model_s - model_s_before) / wall, 2),
             "load_1min_before": round(load_before, 2), "load_1min_after": round(os.getloadavg()[0], 2)}
    print(json.dumps(point), flush=True)
    return point


def main(argv):
    del argv
    artifact = os.path.abspath(FLAGS.artifact)
    bodies = generated_bodies(artifact, FLAGS.num_requests)
    levels = [int(level) for level in FLAGS.concurrency]
    modes = {"batched": (FLAGS.max_batch_size, FLAGS.max_wait_ms), "one_at_a_time": (1, 0.0)}
    if FLAGS.duration_s > 0:
        sweep = {"artifact": FLAGS.artifact, "duration_s": FLAGS.duration_s, "modes": {}}
        for mode, (max_batch_size, max_wait_ms) in modes.items():
            server = Server(artifact, max_batch_size, max_wait_ms)
            try:
                points = [measure(server, bodies, level) for level in levels]
            finally:
                server.stop()
            sweep["modes"][mode] = {"max_batch_size": max_batch_size, "max_wait_ms": max_wait_ms, "points": points}
        results_io.write_results(FLAGS.output, sweep, key="sweep")
    if FLAGS.long_run_s > 0:
        server = Server(artifact, FLAGS.max_batch_size, FLAGS.max_wait_ms)
        samples = []

        def sample():
            samples.append([round(time.time() - started, 1), round(server.rss_mib(), 1)])

        try:
            started = time.time()
            sample()
            latencies, failures, wall = asyncio.run(
                closed_loop(server.port, bodies, max(levels), FLAGS.long_run_s, on_tick=sample))
            sample()
        finally:
            server.stop()
        rss = [value for _, value in samples]
        results_io.write_results(FLAGS.output, {
            "artifact": FLAGS.artifact, "concurrency": max(levels), "seconds": round(wall, 1),
            "requests": len(latencies), "failures": failures, "requests_per_s": round(len(latencies) / wall, 1),
            "p50_ms": percentile_ms(latencies, 50), "p99_ms": percentile_ms(latencies, 99),
            "rss_mib_start": rss[0], "rss_mib_end": rss[-1], "rss_mib_peak": max(rss),
            "rss_mib_after_first_minute_min": min(v for t, v in samples if t >= 60) if wall >= 60 else None,
            "rss_samples": samples}, key="long_run")


if __name__ == "__main__":
    app.run(main)
