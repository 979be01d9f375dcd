"""The Dataflow job offline: `launch/dataflow.sh --dry_run` (that is `study preprocess
--runner=DataflowRunner --dry_run`) builds the whole job with gs:// paths in every flag and no
network, and the workers' package holds the modules the Beam steps import and nothing heavier.

No network: the command runs in a new network namespace (``unshare -n``: no interface but a
loopback that is down) when the machine allows it, and always under a ``sitecustomize`` that makes
every socket connection and name lookup of the Python process fail.
"""

import ast
import os
import pathlib
import subprocess
import sys
import tarfile
import textwrap

from data_pipeline import worker_package

ROOT = pathlib.Path(__file__).resolve().parent.parent

_NO_NETWORK = textwrap.dedent(
    """
    import socket

    def _refuse(*args, **kwargs):
        raise OSError("network disabled by tests/test_pipeline_dataflow.py")

    socket.socket.connect = _refuse
    socket.socket.connect_ex = _refuse
    socket.getaddrinfo = _refuse
    socket.create_connection = _refuse
    """
)


def _network_namespace() -> list:
    """``["unshare", "-n"]`` when this machine can start a process without network, else []."""
    try:
        done = subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return ["unshare", "-n"] if done.returncode == 0 else []


def test_dataflow_dry_run_builds_the_job_without_network(tmp_path):
    blocker = tmp_path / "no_network"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(_NO_NETWORK)
    work, temporary = tmp_path / "work", tmp_path / "tmp"
    work.mkdir()
    temporary.mkdir()
    env = dict(os.environ, PYTHONPATH=f"{blocker}{os.pathsep}{ROOT}", TMPDIR=str(temporary))
    env.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
    command = [
        "bash", str(ROOT / "launch" / "dataflow.sh"), f"--python={sys.executable}",
        "--project=study-project", "--region=us-central1", "--temp_location=gs://study-bucket/tmp",
        "--staging_location=gs://study-bucket/staging",
        "--interactions=gs://study-bucket/logs/a-*.csv,gs://study-bucket/logs/b.parquet",
        "--roster=gs://study-bucket/roster.csv", "--schools=gs://study-bucket/schools.csv",
        "--output_dir=gs://study-bucket/processed", "--dry_run", "--", "--split_mb=16",
    ]
    namespace = _network_namespace()
    result = subprocess.run(
        namespace + command, capture_output=True, text=True, env=env, timeout=300, cwd=work
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    (summary,) = [line for line in lines if line.startswith("dry run:")]
    steps = int(summary.split(" job of ")[1].split()[0])
    assert summary.startswith("dry run: DataflowRunner job of") and steps > 150, summary
    (staged,) = [line for line in lines if line.startswith("staged files:")]
    # The light worker package (an sdist of setup.py) is staged, not the whole project.
    assert "workflow.tar.gz" in staged
    # No file written where the command ran (Beam's stager keeps its caches under TMPDIR).
    assert not list(work.iterdir())
    print(f"network namespace: {bool(namespace)}; {summary}; {staged}")


def _direct_imports(path: pathlib.Path) -> set:
    """Top-level module names a source file imports (at any depth of its code)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module + "".join(f".{a.name}" for a in node.names if node.module == "study.data"))
    return names


def test_worker_package_holds_what_the_beam_steps_import(tmp_path):
    shipped = worker_package.worker_files()
    # The import graph of the shipped modules: every study module it reaches is shipped, and every
    # library it imports is Python's, Beam's, or a worker requirement.
    requirements = {
        r.split(">")[0].split("<")[0].replace("-", "_").replace("tensorflow_cpu", "tensorflow")
        for r in worker_package.WORKER_REQUIREMENTS
    }
    for relative in shipped:
        for name in _direct_imports(ROOT / relative):
            top = name.split(".")[0]
            if top in ("study", "data_pipeline"):
                module_path = name.replace(".", "/") + ".py"
                package_path = name.replace(".", "/") + "/__init__.py"
                assert module_path in shipped or package_path in shipped, (relative, name)
            else:
                assert top in sys.stdlib_module_names | {"apache_beam"} | requirements, (relative, name)
    # Loading every shipped module (and the metadata writer's tensorflow_datasets) loads no
    # training library.
    code = (
        "import sys\n"
        + "".join(f"import {p[:-3].replace('/', '.')}\n" for p in shipped if not p.endswith("__init__.py"))
        + "import tensorflow_datasets\n"
        + "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    heavy = {"jax", "flax", "optax", "orbax", "numpyro", "jraph", "matplotlib", "tensorboardX"}
    assert not heavy & set(loaded.stdout.split())
    # The package builds, and holds those modules and no other part of the project.
    setup_path = worker_package.write_worker_package(str(tmp_path / "package"))
    built = subprocess.run(
        [sys.executable, "setup.py", "-q", "sdist", "--dist-dir", str(tmp_path / "dist")],
        capture_output=True, text=True, cwd=os.path.dirname(setup_path), timeout=300,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (sdist,) = (tmp_path / "dist").iterdir()
    with tarfile.open(sdist) as archive:
        names = {n.split("/", 1)[1] for n in archive.getnames() if n.endswith(".py")}
    assert names == set(shipped) | {"setup.py"}
