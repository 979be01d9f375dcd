"""The JSON schema of ``study serve`` (``POST /v1/recommend``) and its error bodies.

Request body::

    {"students": [{"id": "alice",                                   # optional, echoed back (default: its index)
                   "history": [["book-17", 1600000000], ...],      # (raw item id, integer epoch seconds)
                   "classmates": {"bob": [["book-9", 1600040000]]}, # optional, STUDY artifacts
                   "grade": 5, "query_time": 1600090000,            # optional
                   "exclude": ["book-4"], "k": 5}],                 # optional
     "k": 10}                                         # optional, default min(10, the artifact's top_k)

The fields mean what they mean for ``study recommend`` (``study/serve/recommend.py``). Unknown fields, wrong
types (no coercion: ``"5"`` is not an integer), an empty ``students`` list and the service's limits (students
per request, events per history, classmates per student, ``k`` in 1..top_k, ``grade`` in the artifact's
range) are refused with status 422; a body over the size limit with 413; invalid JSON with 400. Every error
body is ``{"errors": [{"field": "students.0.history.3.1", "message": "..."}]}``, ``field`` being the dotted
path of the offending value (``body`` for the body as a whole).

Response body: ``{"responses": [{"id": ..., "recommendations": [{"item_id": ..., "score": ...}],
"oov_items": n}]}`` in request order; ``oov_items`` counts the student's and classmates' events whose item is
not in the vocabulary (scored as OOV, as in training).
"""

from typing import Any

import pydantic

Event = tuple[str | int, int]  # (raw item id, integer seconds since the epoch)


class Student(pydantic.BaseModel):
    """One student's request (``history`` is required)."""

    model_config = pydantic.ConfigDict(extra="forbid", strict=True)

    id: str | int | None = None
    history: list[Event]
    classmates: dict[str, list[Event]] | None = None
    grade: int | None = None
    query_time: int | None = None
    exclude: list[str | int] | None = None
    k: int | None = None


class RecommendRequest(pydantic.BaseModel):
    """The body of ``POST /v1/recommend``."""

    model_config = pydantic.ConfigDict(extra="forbid", strict=True)

    students: list[Student] = pydantic.Field(min_length=1)
    k: int | None = None  # default: min(10, the artifact's top_k)


def field_path(location) -> str:
    """pydantic's error location (``("students", 0, "history", 3, 1)``) -> ``"students.0.history.3.1"``."""
    return ".".join(str(part) for part in location) or "body"


def validation_errors(error: pydantic.ValidationError) -> list[dict[str, Any]]:
    """The ``errors`` list of an error body; invalid JSON names ``body``."""
    return [{"field": field_path(entry["loc"]), "message": entry["msg"]} for entry in error.errors()]


def error_body(field: str, message: str) -> dict:
    return {"errors": [{"field": field, "message": message}]}


def check_limits(request: RecommendRequest, *, top_k: int, num_grades: int, max_students: int, max_events: int,
                 max_classmates: int) -> list[dict[str, str]]:
    """The service's limits on a schema-valid request; ``[]`` when it keeps them, else one error per field."""
    errors = []

    def fail(field, message):
        errors.append({"field": field, "message": message})

    def check_k(field, k):
        if not 1 <= k <= top_k:
            fail(field, f"k must be in 1..{top_k} (the artifact's top_k), got {k}")

    if len(request.students) > max_students:
        fail("students", f"at most {max_students} students per request, got {len(request.students)}; "
                         "split the request")
    if request.k is not None:
        check_k("k", request.k)
    for n, student in enumerate(request.students):
        where = f"students.{n}"
        if len(student.history) > max_events:
            fail(f"{where}.history", f"at most {max_events} events per history, got {len(student.history)}; "
                                     "send the most recent ones")
        for key, events in (student.classmates or {}).items():
            if len(events) > max_events:
                fail(f"{where}.classmates.{key}", f"at most {max_events} events per classmate, got {len(events)}")
        if student.classmates and len(student.classmates) > max_classmates:
            fail(f"{where}.classmates", f"at most {max_classmates} classmates, got {len(student.classmates)}")
        if student.k is not None:
            check_k(f"{where}.k", student.k)
        if student.grade is not None and not 0 <= student.grade < max(num_grades, 1):
            fail(f"{where}.grade", f"grade must be in 0..{max(num_grades, 1) - 1} (0 = unknown), got {student.grade}")
    return errors
