"""`study recommend` keeps its peak memory flat in the number of requests (bounded batches, streamed input and
output): the peak RSS of a run on 4N requests stays within a small margin of the run on N requests."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np

from tests.test_export import NUM_ITEMS, ROOT, make_artifact

ROW_LENGTH = 64  # long rows, so that one batch of all requests would need far more memory than one of 64
N = 1500
MARGIN = 0.08  # the 4N run's peak may exceed the N run's by at most 8%

RUN_AND_REPORT_PEAK = textwrap.dedent(
    """
    import sys
    from study import cli
    report, args = sys.argv[1], sys.argv[2:]
    try:
        cli.main(["study", "recommend", *args])
    except SystemExit as stop:
        if stop.code:
            raise
    # VmHWM: the peak RSS of this process image. (getrusage's ru_maxrss would also count the RSS of the
    # forked pytest process before exec.)
    with open("/proc/self/status") as status:
        peak_kib = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(report, "w") as handle:
        handle.write(peak_kib)
    """
)


def write_requests(path, count, seed=0):
    """``count`` STUDY requests: 40 events of the student and 3 classmates of 10 events each."""
    rng = np.random.default_rng(seed)
    requests = []
    for number in range(count):
        items = rng.integers(0, NUM_ITEMS, size=70)
        times = np.sort(rng.integers(1_600_000_000, 1_600_900_000, size=70))
        events = [[f"b{item}", int(time)] for item, time in zip(items, times)]
        requests.append({"id": f"s{number}", "history": events[:40], "grade": int(number % 13),
                         "classmates": {f"c{c}": events[40 + 10 * c : 50 + 10 * c] for c in range(3)}})
    path.write_text(json.dumps(requests))


def peak_rss_mib(tmp_path, artifact_dir, count):
    requests, output, report = (tmp_path / f"requests_{count}.json", tmp_path / f"responses_{count}.json",
                                tmp_path / f"peak_{count}.txt")
    write_requests(requests, count)
    script = tmp_path / "run_and_report_peak.py"
    script.write_text(RUN_AND_REPORT_PEAK)
    subprocess.run(
        [sys.executable, str(script), str(report), f"--artifact={artifact_dir}", f"--requests={requests}",
         f"--output={output}", "--k=5", "--batch_size=64"],
        check=True, cwd=ROOT, env=dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT), timeout=300)
    responses = json.loads(output.read_text())["responses"]
    assert [response["id"] for response in responses] == [f"s{n}" for n in range(count)]
    assert all(len(response["recommendations"]) == 5 for response in responses)
    return int(report.read_text()) / 1024


def test_peak_memory_is_flat_in_the_number_of_requests(tmp_path):
    _, _, artifact_dir = make_artifact(str(tmp_path / "model"), "study", row_length=ROW_LENGTH, top_k=8)
    small = peak_rss_mib(tmp_path, artifact_dir, N)
    large = peak_rss_mib(tmp_path, artifact_dir, 4 * N)
    print(f"peak RSS: {N} requests {small:.0f} MiB, {4 * N} requests {large:.0f} MiB")
    assert large <= small * (1 + MARGIN), (
        f"peak RSS grew from {small:.0f} MiB ({N} requests) to {large:.0f} MiB ({4 * N} requests)")
