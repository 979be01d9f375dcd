"""Shared by the quality benchmarks: generated Learning-Ally-shaped data through the Beam job, cached on disk."""

import json
import os
import time


def prepare_data(work_dir: str, num_students: int, seed: int) -> tuple[str, dict]:
    """Raw synthetic data + the Beam job's output under ``work_dir``; returns the processed folder and its
    ``stats.json``."""
    from data_pipeline import build_dataset
    from study.sims import synthetic_learning_ally as sla

    raw = os.path.join(work_dir, "raw")
    processed = os.path.join(work_dir, "processed")
    if not os.path.exists(os.path.join(raw, "interactions.csv")):
        started = time.perf_counter()
        sla.write(sla.generate(num_students, seed=seed), raw, formats=("canonical",))
        print(f"generated {num_students} students in {time.perf_counter() - started:.0f}s")
    if not os.path.exists(os.path.join(processed, "stats.json")):
        started = time.perf_counter()
        config = build_dataset.PipelineConfig(
            interactions=os.path.join(raw, "interactions.csv"), roster=os.path.join(raw, "roster.csv"),
            schools=os.path.join(raw, "schools.csv"), output_dir=processed)
        build_dataset.build_dataset(config)
        print(f"Beam job in {time.perf_counter() - started:.0f}s")
    with open(os.path.join(processed, "stats.json")) as handle:
        return processed, json.load(handle)
