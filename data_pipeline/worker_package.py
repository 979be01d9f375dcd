"""The package that remote Beam workers (Dataflow) install: the job's modules and their libraries.

The repository's own ``setup.py`` installs the whole project (JAX, Flax, Orbax, ...). Workers run
only the Beam steps, which import ``data_pipeline`` and a few ``study.data`` modules (the import
graph is checked by ``tests/test_pipeline_runners.py``); ``write_worker_package`` writes a
``setup.py`` that ships just those modules and requires just their libraries. Beam's container
image already holds ``apache-beam[gcp]``. TensorFlow stays: ``tensorflow_datasets`` needs it to
write the datasets' metadata.
"""

import os
import shutil

# Libraries the Beam steps import (besides apache_beam), with the project's version bounds.
WORKER_REQUIREMENTS = (
    "numpy>=1.26",
    "pandas>=2.2",
    "pyarrow>=16",
    "google-crc32c>=1.5",
    "tensorflow-datasets>=4.9,<5",
    "tensorflow-cpu>=2.18,<2.22",
)
# Modules of ``study`` the Beam steps import.
STUDY_MODULES = (
    "study/__init__.py",
    "study/data/__init__.py",
    "study/data/raw_schema.py",
    "study/data/reserved_ids.py",
    "study/data/row_builder.py",
    "study/data/row_format.py",
    "study/data/vocabulary.py",
)
_SETUP = '''"""The dataset job's modules for Beam workers (written by data_pipeline.worker_package)."""

import setuptools

setuptools.setup(
    name="study-dataset-worker",
    version="0.1.0",
    packages=["data_pipeline", "study", "study.data"],
    install_requires={requirements!r},
)
'''


def repository_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# The job's command line and the Diginetica job do not run on the workers.
_NOT_SHIPPED = ("build_dataset.py", "diginetica.py")


def worker_files() -> list:
    """Repository-relative paths of the files shipped to the workers."""
    pipeline = sorted(
        f"data_pipeline/{name}"
        for name in os.listdir(os.path.join(repository_root(), "data_pipeline"))
        if name.endswith(".py") and name not in _NOT_SHIPPED
    )
    return pipeline + list(STUDY_MODULES)


def write_worker_package(folder: str) -> str:
    """Writes the worker package (``setup.py`` + modules) into ``folder``; returns the setup.py
    path, for Beam's ``--setup_file``."""
    root = repository_root()
    for relative in worker_files():
        target = os.path.join(folder, relative)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(os.path.join(root, relative), target)
    setup_path = os.path.join(folder, "setup.py")
    with open(setup_path, "w") as handle:
        handle.write(_SETUP.format(requirements=list(WORKER_REQUIREMENTS)))
    return setup_path
