"""`study serve`: an HTTP JSON recommender over a serving artifact, with micro-batching.

    study serve --artifact=runs/smoke/export/study [--host=127.0.0.1] [--port=8000] [--max_batch_size=64] \\
        [--max_wait_ms=2] [--max_body_bytes=1048576] [--max_students=256] [--max_events=1000] [--max_classmates=100]

Endpoints (FastAPI + uvicorn):

* ``POST /v1/recommend``: one or many students (``study.serve.http_schema``), the same answers as
  ``study recommend``; the students' rows join the concurrent requests' rows in micro-batches
  (``study.serve.micro_batching``): at most ``--max_batch_size`` rows, gathered for at most ``--max_wait_ms``.
* ``GET /healthz``: 200 while the process runs. ``GET /readyz``: 503 until every batch shape is compiled
  (warm-up), then 200; ``/v1/recommend`` answers 503 until then too.
* ``GET /metrics``: Prometheus text: requests by status, request latency, batch sizes, rows, OOV items.

On SIGTERM / SIGINT uvicorn stops accepting connections and waits for the open requests; the batcher then
scores every queued row before the process exits (graceful shutdown).
"""

import asyncio
import json
import os
import threading
import time

from absl import flags

from study import cli

FLAGS = flags.FLAGS
DEFAULT_K = 10  # recommendations per student when the request names no k (at most the artifact's top_k)
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The service's Prometheus metrics, in their own registry (one per app)."""

    def __init__(self, max_batch_size: int):
        import prometheus_client as prom

        self.registry = prom.CollectorRegistry()
        self.requests = prom.Counter("study_serve_requests", "HTTP requests to /v1/recommend by status code",
                                     ["code"], registry=self.registry)
        self.latency = prom.Histogram("study_serve_request_latency_seconds",
                                      "wall time of /v1/recommend requests, body read to response",
                                      buckets=LATENCY_BUCKETS_S, registry=self.registry)
        batch_buckets = sorted({2 ** n for n in range(max_batch_size.bit_length())} | {max_batch_size})
        self.batch_size = prom.Histogram("study_serve_batch_size", "rows per scored micro-batch",
                                         buckets=batch_buckets, registry=self.registry)
        self.batch_seconds = prom.Histogram("study_serve_batch_seconds", "model time per micro-batch",
                                            buckets=LATENCY_BUCKETS_S, registry=self.registry)
        self.rows = prom.Counter("study_serve_rows", "students scored", registry=self.registry)
        self.oov = prom.Counter("study_serve_oov_items", "request events whose item is not in the vocabulary",
                                registry=self.registry)

    def on_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)

    def text(self) -> bytes:
        import prometheus_client as prom

        return prom.generate_latest(self.registry)


async def read_body(request, limit: int) -> bytes | None:
    """The request body, or None when it exceeds ``limit`` bytes (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(artifact_dir: str, *, max_batch_size: int = 64, max_wait_ms: float = 2.0,
               max_body_bytes: int = 1 << 20, max_students: int = 256, max_events: int = 1000,
               max_classmates: int = 100):
    """The FastAPI app serving ``artifact_dir``; warm-up starts in a thread when the app starts."""
    import fastapi
    import pydantic
    from fastapi import responses

    from study.serve import http_schema, micro_batching, serving_artifact

    recommender = serving_artifact.load_artifact(artifact_dir)
    scorer = micro_batching.BucketedScorer(recommender, max_batch_size)
    metrics = Metrics(max_batch_size)
    batcher = micro_batching.MicroBatcher(scorer.score, max_batch_size, max_wait_ms, on_batch=metrics.on_batch)
    limits = dict(top_k=recommender.top_k, num_grades=recommender.num_grades, max_students=max_students,
                  max_events=max_events, max_classmates=max_classmates)

    async def lifespan(app):
        batcher.start()
        warm_up = threading.Thread(target=scorer.warm_up, name="warm-up", daemon=True)
        warm_up.start()
        yield
        await batcher.drain()  # uvicorn has waited for the open requests; score what is still queued

    app = fastapi.FastAPI(title="study serve", lifespan=lifespan)
    app.state.recommender, app.state.scorer, app.state.metrics = recommender, scorer, metrics

    def answer(status: int, content: dict, started: float | None = None):
        metrics.requests.labels(code=str(status)).inc()
        if started is not None:
            metrics.latency.observe(time.perf_counter() - started)
        return responses.Response(json.dumps(content), status_code=status, media_type="application/json")

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz():
        if scorer.ready and batcher.accepting:
            return {"status": "ready", "buckets": list(scorer.buckets)}
        return responses.JSONResponse({"status": "warming up" if batcher.accepting else "shutting down"}, 503)

    @app.get("/metrics")
    async def prometheus_metrics():
        return responses.Response(metrics.text(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.post("/v1/recommend")
    async def recommend(request: fastapi.Request):
        started = time.perf_counter()
        if not (scorer.ready and batcher.accepting):
            return answer(503, http_schema.error_body("service", "not ready: compiling the model (see /readyz)"))
        body = await read_body(request, max_body_bytes)
        if body is None:
            return answer(413, http_schema.error_body("body", f"the body exceeds {max_body_bytes} bytes; send "
                                                              "fewer students per request"), started)
        try:
            parsed = http_schema.RecommendRequest.model_validate_json(body)
        except pydantic.ValidationError as error:
            errors = http_schema.validation_errors(error)
            status = 400 if any(entry["type"] == "json_invalid" for entry in error.errors()) else 422
            return answer(status, {"errors": errors}, started)
        errors = http_schema.check_limits(parsed, **limits)
        if errors:
            return answer(422, {"errors": errors}, started)
        prepared, oov_counts = [], []
        k = min(DEFAULT_K, recommender.top_k) if parsed.k is None else parsed.k
        for n, student in enumerate(parsed.students):
            fields = student.model_dump(exclude_none=True)
            try:
                prepared.append(recommender.prepare(n, fields, k))
            except ValueError as error:
                return answer(422, http_schema.error_body(f"students.{n}", str(error)), started)
            events = [*student.history, *(e for events in (student.classmates or {}).values() for e in events)]
            oov_counts.append(sum(recommender.item_id(item) == recommender.oov for item, _ in events))
        try:
            scored = await asyncio.gather(*(batcher.submit((row, query)) for row, query, _, _ in prepared))
        except RuntimeError:
            return answer(503, http_schema.error_body("service", "shutting down; retry on another replica"),
                          started)
        metrics.rows.inc(len(prepared))
        metrics.oov.inc(sum(oov_counts))
        answers = []
        for n, ((ids, scores), (_, _, k, exclude)) in enumerate(zip(scored, prepared)):
            ranked = recommender.rank(ids, scores, k, exclude)
            student_id = parsed.students[n].id
            answers.append({"id": n if student_id is None else student_id, "oov_items": oov_counts[n],
                            "recommendations": [{"item_id": item, "score": score} for item, score in ranked]})
        return answer(200, {"responses": answers}, started)

    return app


def check_flags() -> None:
    """Checks the flags before JAX is imported; ``cli.InputError`` naming the flag otherwise."""
    if not os.path.isfile(os.path.join(FLAGS.artifact, "manifest.json")):
        raise cli.InputError(f"--artifact={FLAGS.artifact}: not a serving artifact folder (no manifest.json); "
                             "write one with `study export`")
    for name in ("max_batch_size", "max_body_bytes", "max_students", "max_events", "max_classmates"):
        if getattr(FLAGS, name) < 1:
            raise cli.InputError(f"--{name}={getattr(FLAGS, name)}: must be >= 1")
    if FLAGS.max_wait_ms < 0:
        raise cli.InputError(f"--max_wait_ms={FLAGS.max_wait_ms}: must be >= 0")
    if not 0 <= FLAGS.port < 65536:
        raise cli.InputError(f"--port={FLAGS.port}: must be in 0..65535")


def main(argv) -> None:
    del argv
    check_flags()
    import uvicorn

    app = create_app(FLAGS.artifact, max_batch_size=FLAGS.max_batch_size, max_wait_ms=FLAGS.max_wait_ms,
                     max_body_bytes=FLAGS.max_body_bytes, max_students=FLAGS.max_students,
                     max_events=FLAGS.max_events, max_classmates=FLAGS.max_classmates)
    print(f"serving {FLAGS.artifact} on http://{FLAGS.host}:{FLAGS.port} (ready when /readyz answers 200)",
          flush=True)
    uvicorn.run(app, host=FLAGS.host, port=FLAGS.port, log_level=FLAGS.log_level,
                timeout_graceful_shutdown=FLAGS.graceful_shutdown_s)


def define_flags() -> None:
    flags.DEFINE_string("artifact", None, "serving artifact folder (written by study export)")
    flags.DEFINE_string("host", "127.0.0.1", "address to listen on (0.0.0.0: every interface)")
    flags.DEFINE_integer("port", 8000, "TCP port")
    flags.DEFINE_integer("max_batch_size", 64, "most rows scored per model call (1: one at a time)")
    flags.DEFINE_float("max_wait_ms", 2.0, "longest a row waits for others to join its batch, milliseconds")
    flags.DEFINE_integer("max_body_bytes", 1 << 20, "largest request body accepted (413 above)")
    flags.DEFINE_integer("max_students", 256, "most students per request")
    flags.DEFINE_integer("max_events", 1000, "most events per history (the student's, each classmate's)")
    flags.DEFINE_integer("max_classmates", 100, "most classmates per student")
    flags.DEFINE_float("graceful_shutdown_s", 30.0, "longest wait for open requests after SIGTERM, seconds")
    flags.DEFINE_enum("log_level", "warning", ["critical", "error", "warning", "info", "debug"],
                      "uvicorn's log level")
    flags.mark_flags_as_required(["artifact"])


if __name__ == "__main__":
    define_flags()
    cli.run(main)
