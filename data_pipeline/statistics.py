"""Job statistics: counters merged across the pipeline, checked, written as stats.json / stats.md.

Every stage emits small dicts of flat counters (``"interactions/rows_in": 10``, ``"split/train/
classrooms": {"a", "b"}``); ``MergeCounters`` adds ints and unions sets. ``nested_stats`` turns the
result into the stats.json layout; ``stats_markdown`` writes the table shaped like Table 3 of the
STUDY appendix (interactions, students, classrooms, districts per split) plus row counts, dead
letters and OOV shares.
"""

import json

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from study.data import row_format

INPUT_KINDS = ("interactions", "roster", "schools")


MAX_PREFIX = "max/"  # counters kept as the largest value met, not summed


def merge_counters(total: dict, counters: dict) -> dict:
    """Adds flat ``counters`` into ``total``: ints summed, sets unioned, ``max/...`` ints maxed."""
    for key, value in counters.items():
        if isinstance(value, set):
            total.setdefault(key, set()).update(value)
        elif key.startswith(MAX_PREFIX):
            total[key] = max(total.get(key, value), value)
        else:
            total[key] = total.get(key, 0) + value
    return total


class MergeCounters(beam.CombineFn):
    """Merges flat counter dicts (``merge_counters``)."""

    def create_accumulator(self):
        return {}

    def add_input(self, total, counters):
        return merge_counters(total, counters)

    def merge_accumulators(self, accumulators):
        merged = {}
        for accumulator in accumulators:
            self.add_input(merged, accumulator)
        return merged

    def extract_output(self, total):
        return total


def nested_stats(counters: dict) -> dict:
    """Flat counters -> stats.json dict; raises if rows_in != rows_kept + rows_dead_lettered."""
    stats = {"inputs": {}, "splits": {}, "rows": {}}
    for kind in INPUT_KINDS:
        rows_in = counters.get(f"{kind}/rows_in", 0)
        reasons = {
            key.split("/", 2)[2]: value
            for key, value in sorted(counters.items())
            if key.startswith(f"{kind}/dead/")
        }
        entry = {
            "rows_in": rows_in,
            "rows_kept": counters.get(f"{kind}/rows_kept", 0),
            "rows_dead_lettered": sum(reasons.values()),
            "dead_letter_reasons": reasons,
        }
        if entry["rows_in"] != entry["rows_kept"] + entry["rows_dead_lettered"]:
            raise AssertionError(
                f"{kind}: rows_in {entry['rows_in']} != rows_kept {entry['rows_kept']} + "
                f"rows_dead_lettered {entry['rows_dead_lettered']}"
            )
        if rows_in or kind != "schools":
            stats["inputs"][kind] = entry
    # Blank lines of CSV inputs: skipped, neither rows in nor dead letters.
    stats["blank_lines"] = {kind: counters.get(f"{kind}/blank_lines", 0) for kind in stats["inputs"]}
    for split in row_format.SPLITS:
        prefix = f"split/{split}/"
        interactions = counters.get(prefix + "interactions", 0)
        oov = counters.get(prefix + "oov_interactions", 0)
        stats["splits"][split] = {
            "interactions": interactions,
            "students": counters.get(prefix + "students", 0),
            "classrooms": len(counters.get(prefix + "classrooms", ())),
            "districts": len(counters.get(prefix + "districts", ())),
            "oov_interactions": oov,
            "oov_share": oov / interactions if interactions else 0.0,
        }
    for dataset in row_format.DATASETS:
        stats["rows"][dataset] = {
            split: counters.get(f"rows/{dataset}/{split}", 0) for split in row_format.SPLITS
        }
    # The parallelism the job chose and the largest grouped elements it built (in interactions).
    stats["elements"] = {
        key[len(MAX_PREFIX) :]: value for key, value in sorted(counters.items()) if key.startswith(MAX_PREFIX)
    }
    if "split_timestamp" in counters:
        stats["split_timestamp"] = counters["split_timestamp"]
    return stats


def stats_markdown(stats: dict) -> str:
    """stats.json dict -> a markdown report (Table 3 layout first)."""
    splits = row_format.SPLITS
    lines = ["# Dataset statistics", "", "| | " + " | ".join(splits) + " |", "|---|" + "---:|" * 3]
    for measure in ("interactions", "students", "classrooms", "districts"):
        values = [f"{stats['splits'][s][measure]:,}" for s in splits]
        lines.append(f"| {measure} | " + " | ".join(values) + " |")
    shares = [f"{100 * stats['splits'][s]['oov_share']:.2f}%" for s in splits]
    lines.append("| OOV share | " + " | ".join(shares) + " |")
    lines += ["", "## Rows", "", "| dataset | " + " | ".join(splits) + " |", "|---|" + "---:|" * 3]
    for dataset, counts in stats["rows"].items():
        lines.append(f"| {dataset} | " + " | ".join(f"{counts[s]:,}" for s in splits) + " |")
    lines += [
        "",
        "## Inputs and dead letters",
        "",
        "| input | rows in | kept | dead-lettered | reasons | blank lines skipped |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for kind, entry in stats["inputs"].items():
        reasons = ", ".join(f"{r}: {n:,}" for r, n in entry["dead_letter_reasons"].items()) or "-"
        lines.append(
            f"| {kind} | {entry['rows_in']:,} | {entry['rows_kept']:,} | "
            f"{entry['rows_dead_lettered']:,} | {reasons} | "
            f"{stats.get('blank_lines', {}).get(kind, 0):,} |"
        )
    return "\n".join(lines) + "\n"


def write_stats(counters: dict, output_dir: str) -> dict:
    """Writes stats.json and stats.md under ``output_dir``; returns the stats dict."""
    stats = nested_stats(counters)
    with FileSystems.create(FileSystems.join(output_dir, "stats.json")) as handle:
        handle.write(json.dumps(stats, indent=1, sort_keys=True).encode("utf-8"))
    with FileSystems.create(FileSystems.join(output_dir, "stats.md")) as handle:
        handle.write(stats_markdown(stats).encode("utf-8"))
    return stats


class WriteStatistics(beam.PTransform):
    """PCollection of counter dicts -> stats.json + stats.md (a singleton of the stats dict)."""

    def __init__(self, output_dir: str):
        super().__init__()
        self._output_dir = output_dir

    def expand(self, counters):
        return (
            counters
            | "MergeCounters" >> beam.CombineGlobally(MergeCounters())
            | "WriteStats" >> beam.Map(write_stats, self._output_dir)
        )
