"""Apache Beam jobs that turn raw learning-platform logs into model datasets.

``build_dataset`` is the job (and its command line); each stage is a PTransform in a module named
by what it produces: ``file_ranges`` (input files listed and cut into ranges read in parallel;
``input_files`` and ``csv_lines`` read them), ``read_raw`` (validated records + dead letters), ``student_sequences``
(per-student histories), ``splits``, ``vocabulary``, ``model_rows`` (Individual and STUDY rows),
``write_rows`` (TFRecord + tfds metadata) and ``statistics`` (stats.json, stats.md).
``job_submission`` and ``worker_package`` prepare a remote (Dataflow) run and its offline dry run.
"""
