"""Submitting the dataset job to a remote runner: the workers' package, and the offline dry run.

``with_worker_package``: for the DataflowRunner, unless the options already say how workers get
the code (``--setup_file``, ``--sdk_container_image``, ...), stage the light worker package
(``worker_package``) instead of the whole project.

``dry_run``: with ``--dry_run`` the DataflowRunner builds the job (graph, Runner API proto, staged
artifacts) and stops before it talks to the service. The job's graph lists its inputs when it runs
(``file_ranges.ListInputFiles``), so nothing here reaches the storage either: no file is listed,
read or written; only the worker package is built in a local temporary folder.
"""

import tempfile

import apache_beam as beam
from apache_beam.options.pipeline_options import SetupOptions
from apache_beam.options.pipeline_options import StandardOptions
from apache_beam.options.pipeline_options import TestOptions
from apache_beam.options.pipeline_options import WorkerOptions
from apache_beam.portability import common_urns
from apache_beam.portability.api import beam_runner_api_pb2

from data_pipeline import worker_package

REMOTE_RUNNERS = ("DataflowRunner", "dataflow")


def runner_name(options) -> str:
    return options.view_as(StandardOptions).runner or "DirectRunner"


def is_dry_run(options) -> bool:
    return bool(options.view_as(TestOptions).dry_run)


def with_worker_package(options, folder: str):
    """Sets ``--setup_file`` to the light worker package written into ``folder`` when the options
    run on Dataflow and do not ship the code another way; returns ``options``."""
    setup = options.view_as(SetupOptions)
    shipped = (
        setup.setup_file
        or setup.extra_packages
        or setup.requirements_file
        or options.view_as(WorkerOptions).sdk_container_image
    )
    if runner_name(options) in REMOTE_RUNNERS and not shipped:
        setup.setup_file = worker_package.write_worker_package(folder)
    return options


def staged_files(proto) -> list:
    """Names of the artifacts a Runner API pipeline proto stages for its workers, sorted."""
    names = set()
    for environment in proto.components.environments.values():
        for artifact in environment.dependencies:
            if artifact.role_urn == common_urns.artifact_roles.STAGING_TO.urn:
                payload = beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(
                    artifact.role_payload
                )
                names.add(payload.staged_name)
    return sorted(names)


def leaf_steps(proto) -> int:
    """Primitive transforms (steps) of a Runner API pipeline proto."""
    return sum(1 for t in proto.components.transforms.values() if not t.subtransforms)


def dry_run(options, build) -> dict:
    """Builds the job with ``build(pipeline)`` and the DataflowRunner's dry run.

    Returns ``{"runner", "steps", "staged_files"}``. Raises ValueError for another runner (which
    would run the job instead).
    """
    if runner_name(options) not in REMOTE_RUNNERS:
        raise ValueError(
            f"--dry_run builds a DataflowRunner job without submitting it; --runner="
            f"{runner_name(options)} has no dry run. Pass --runner=DataflowRunner."
        )
    with tempfile.TemporaryDirectory(prefix="study-worker-package-") as folder:
        pipeline = beam.Pipeline(options=with_worker_package(options, folder))
        build(pipeline)
        pipeline.run()
        proto = pipeline.runner.proto_pipeline
    return {
        "runner": runner_name(options),
        "steps": leaf_steps(proto),
        "staged_files": staged_files(proto),
    }
