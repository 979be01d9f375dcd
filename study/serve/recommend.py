"""Next-item recommendations for a JSON file of requests, from a serving artifact (``study recommend``).

Requests file: a JSON list of requests, or ``{"requests": [...]}``. A request::

    {"id": "alice",                                   # optional, echoed back
     "history": [["book-17", 1600000000], ["book-4", 1600086400]],   # (raw item, epoch seconds)
     "classmates": {"bob": [["book-9", 1600040000]]},                # optional, STUDY artifacts
     "grade": 5,                                       # optional, 0..12 (0 = unknown)
     "query_time": 1600090000,                         # optional, default just after the history
     "exclude": ["book-4"],                            # optional raw items never to recommend
     "k": 5}                                           # optional, overrides the command's k

Responses file: ``{"artifact": path, "k": k, "responses": [{"id": ..., "recommendations":
[{"item_id": raw id, "score": log-probability}, ...]}, ...]}`` in request order.

Usage::

    python -m study.serve.recommend --artifact=artifacts/study --requests=requests.json \\
        --output=responses.json --k=10
"""

import json
import sys

from study.serve import serving_artifact


def _read_requests(histories_json: str) -> list:
    try:
        with open(histories_json, encoding="utf-8") as handle:
            payload = json.load(handle)
    except FileNotFoundError:
        raise FileNotFoundError(f"requests file {histories_json} does not exist") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"requests file {histories_json} is not valid JSON: {error}") from None
    requests = payload.get("requests") if isinstance(payload, dict) else payload
    if not isinstance(requests, list):
        raise ValueError(
            f"requests file {histories_json} must hold a JSON list of requests or "
            '{"requests": [...]}'
        )
    return requests


def recommend_from_file(artifact_dir: str, histories_json: str, k: int = 10, output_json: str | None = None) -> dict:
    """Answers every request of ``histories_json`` with the artifact in ``artifact_dir``.

    Returns the responses dict (see the module docstring) and writes it to ``output_json`` when given.
    Raises ValueError naming the file and request number for malformed requests.
    """
    recommender = serving_artifact.load_artifact(artifact_dir)
    requests = _read_requests(histories_json)
    try:
        ranked = recommender.recommend_batch(requests, k=k)
    except ValueError as error:
        raise ValueError(f"{histories_json}: {error}") from None
    responses = {
        "artifact": artifact_dir,
        "k": k,
        "responses": [
            {
                "id": request.get("id", number),
                "recommendations": [{"item_id": item, "score": score} for item, score in items],
            }
            for number, (request, items) in enumerate(zip(requests, ranked))
        ],
    }
    if output_json:
        with open(output_json, "w", encoding="utf-8") as handle:
            json.dump(responses, handle, indent=1)
            handle.write("\n")
    return responses


def main(argv=None) -> int:
    """``python -m study.serve.recommend --artifact=DIR --requests=FILE [--output=FILE] [--k=10]``.

    Without ``--output`` the responses go to stdout.
    """
    from absl import flags

    flag_values = flags.FlagValues()
    flags.DEFINE_string("artifact", None, "serving artifact directory (study export)", flag_values=flag_values)
    flags.DEFINE_string("requests", None, "JSON file of requests", flag_values=flag_values)
    flags.DEFINE_string("output", None, "where to write the JSON responses (default stdout)", flag_values=flag_values)
    flags.DEFINE_integer("k", 10, "recommendations per request", flag_values=flag_values)
    flag_values(list(sys.argv if argv is None else argv))
    missing = [name for name in ("artifact", "requests") if not flag_values[name].value]
    if missing:
        print(f"missing required flag(s): {', '.join('--' + name for name in missing)}\n"
              f"usage: {main.__doc__.splitlines()[0]}", file=sys.stderr)
        return 2
    responses = recommend_from_file(flag_values.artifact, flag_values.requests, flag_values.k, flag_values.output)
    if not flag_values.output:
        json.dump(responses, sys.stdout, indent=1)
        sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
