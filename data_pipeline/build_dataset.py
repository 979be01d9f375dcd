"""The dataset job: raw logs -> splits, vocabulary, Individual and STUDY rows, stats, dead letters.

Usage::

    python -m data_pipeline.build_dataset --interactions='logs/*.csv' --roster=roster.csv \\
        [--schools=schools.csv] --output_dir=processed [--overwrite] [--allow_empty_split] \\
        [--split_date=2021-08-01 | --split_time=1627776000 | --split_quantile=0.8] \\
        [--vocab_size=2000 --row_length=65 --segment_length=65 --num_packings=4 --seed=0] \\
        [--runner=DataflowRunner --project=... --region=... --temp_location=gs://...]

Any flag this module does not define must be a Beam pipeline option and is passed to Beam; any
other flag (a misspelled one) is an error (exit 2). The runner defaults to the DirectRunner.

Output directory::

    individual/  study/        TFRecord shards + tfds metadata, one tfds dataset each
    vocab.json                 study.data.vocabulary
    students.csv               per-student facts for evaluation breakdowns
    dead_letter/*.jsonl        rejected input rows with a reason
    stats.json, stats.md       Table-3-style counts, rows, dead letters, OOV shares
    pipeline_config.json       the options of the run

The output is written to a temporary folder beside ``--output_dir`` and put in its place at the
end (``output_folder``): a rerun leaves no stale shard, a failed run leaves the previous output.
A non-empty ``--output_dir`` that is not a previous output of this job is refused unless
``--overwrite``. The job fails (exit 1) when a split it is asked for holds no interaction, unless
``--allow_empty_split``.
"""

import dataclasses
import difflib
import json
import sys
import tempfile

import apache_beam as beam
from absl import app
from absl import flags
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from data_pipeline import file_ranges
from data_pipeline import job_submission
from data_pipeline import model_rows
from data_pipeline import output_folder
from data_pipeline import read_raw
from data_pipeline import split_check
from data_pipeline import splits
from data_pipeline.split_check import EmptySplitError
from data_pipeline import statistics
from data_pipeline import student_sequences
from data_pipeline import vocabulary
from data_pipeline import write_rows
from study import cli
from study.data import raw_schema
from study.data import row_format


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Options of the dataset job (see the module docstring)."""

    interactions: str  # comma-separated paths / globs, CSV or Parquet
    roster: str
    output_dir: str
    schools: str | None = None
    # The train / later boundary: at most one of these; default: start of the second school year.
    split_date: str | None = None  # YYYY-MM-DD (or an ISO datetime)
    split_time: int | None = None  # in the unit of the timestamps (epoch seconds, event counter)
    split_quantile: float | None = None  # in (0, 1): the share of kept interactions in train
    validation_fraction: float = 0.5
    vocab_size: int = 2000  # v: items in the vocabulary, reserved ids not counted
    row_length: int = row_format.DEFAULT_ROW_LENGTH  # c
    segment_length: int = row_format.DEFAULT_ROW_LENGTH  # s <= c
    num_packings: int = 4
    seed: int = 0
    school_year_start_month: int = raw_schema.SCHOOL_YEAR_START_MONTH
    rows_per_shard: int = 20000
    chunk_bytes: int = 64 << 20  # CSV block / Parquet batch size read at once
    split_bytes: int = 64 << 20  # CSV files are read in byte ranges of this size, in parallel
    student_buckets: int | None = None  # fixed number of student / classroom buckets, else:
    interactions_per_bucket: int = read_raw.DEFAULT_INTERACTIONS_PER_BUCKET  # one bucket per this many lines
    allow_empty_split: bool = False  # else a split asked for (requested_splits) must not be empty
    overwrite: bool = False  # replace an output_dir that holds other files than a previous output

    def validate(self) -> None:
        if not 1 <= self.segment_length <= self.row_length:
            raise ValueError(
                f"segment_length={self.segment_length} must be in [1, row_length={self.row_length}]"
            )
        if not 0.0 <= self.validation_fraction <= 1.0:
            raise ValueError(f"validation_fraction={self.validation_fraction} must be in [0, 1]")
        if self.vocab_size < 0 or self.num_packings < 1 or self.rows_per_shard < 1:
            raise ValueError("vocab_size must be >= 0, num_packings and rows_per_shard >= 1")
        if self.chunk_bytes < 1 or self.split_bytes < 1 or self.interactions_per_bucket < 1:
            raise ValueError("chunk_mb, split_mb and interactions_per_bucket must be >= 1")
        if self.student_buckets is not None and self.student_buckets < 1:
            raise ValueError(f"--student_buckets={self.student_buckets} must be >= 1 (or unset)")
        if not 1 <= self.school_year_start_month <= 12:
            raise ValueError("school_year_start_month must be in 1..12")
        given = [f"--{name}" for name in _SPLIT_OPTIONS if getattr(self, name) is not None]
        if len(given) > 1:
            raise ValueError(f"give at most one of --split_date, --split_time, --split_quantile, not {given}")
        if self.split_quantile is not None and not 0.0 < self.split_quantile < 1.0:
            raise ValueError(
                f"--split_quantile={self.split_quantile} must be in (0, 1): the share of the kept "
                "interactions that fall before the split"
            )
        if self.split_date is not None:
            splits.parse_split_date(self.split_date)

    def split_timestamp(self) -> int | None:
        """The given split boundary (``split_date`` or ``split_time``), None when it is computed."""
        if self.split_date is not None:
            return splits.parse_split_date(self.split_date)
        return self.split_time

    def requested_splits(self) -> tuple:
        """The splits the options ask for: train, and validation / test unless the validation
        fraction leaves one of them out (0: no validation, 1: no test)."""
        names = [splits.SPLIT_NAMES[splits.TRAIN]]
        if self.validation_fraction > 0:
            names.append(splits.SPLIT_NAMES[splits.VALIDATION])
        if self.validation_fraction < 1:
            names.append(splits.SPLIT_NAMES[splits.TEST])
        return tuple(names)


_SPLIT_OPTIONS = ("split_date", "split_time", "split_quantile")
__all__ = ["EmptySplitError", "PipelineConfig", "build_dataset", "build_pipeline"]


@dataclasses.dataclass(frozen=True)
class InspectedInputs:
    interactions: list
    roster: list
    schools: list


def inspect_inputs(config: PipelineConfig) -> InspectedInputs:
    """Checks every input file before the job starts; raises ``read_raw.InputError``."""
    return InspectedInputs(
        interactions=read_raw.inspect_inputs(config.interactions, read_raw.INTERACTIONS, True),
        roster=read_raw.inspect_inputs(config.roster, read_raw.ROSTER),
        schools=(
            read_raw.inspect_inputs(config.schools, read_raw.SCHOOLS) if config.schools else []
        ),
    )


def _to_dir(output_dir: str, *parts: str) -> str:
    return FileSystems.join(output_dir, *parts)


def build_pipeline(
    pipeline: beam.Pipeline, config: PipelineConfig, inputs: InspectedInputs | None = None
):
    """Adds the dataset job's stages to ``pipeline``.

    ``inputs``: the inspected input files; None: the files are listed and inspected when the
    pipeline runs (the same graph, built without reaching the storage).
    """
    out = config.output_dir
    chunk = config.chunk_bytes
    if inputs is None:
        sources = (config.interactions, config.roster, config.schools or [])
    else:
        sources = (inputs.interactions, inputs.roster, inputs.schools)
    kinds = (read_raw.INTERACTIONS, read_raw.ROSTER, read_raw.SCHOOLS)
    files, ranges = {}, {}
    for source, kind in zip(sources, kinds):
        name = kind.name.capitalize()
        files[kind.name] = pipeline | f"List{name}" >> file_ranges.ListInputFiles(source, kind)
        ranges[kind.name] = files[kind.name] | f"Index{name}" >> file_ranges.IndexRanges(
            config.split_bytes
        )
    buckets = ranges["interactions"] | "StudentBuckets" >> file_ranges.BucketCount(
        config.interactions_per_bucket, config.student_buckets
    )
    interactions = ranges["interactions"] | "ReadInteractions" >> read_raw.ReadRanges(
        read_raw.INTERACTIONS, chunk, buckets
    )
    roster = ranges["roster"] | "ReadRoster" >> read_raw.ReadRanges(read_raw.ROSTER, chunk, buckets)
    school_records = ranges["schools"] | "ReadSchools" >> read_raw.ReadRanges(
        read_raw.SCHOOLS, chunk, 1
    )
    schools = school_records.good | "SchoolTable" >> read_raw.SchoolTable(files["schools"])
    histories = (
        interactions.good,
        roster.good,
        schools.good,
    ) | "StudentHistories" >> student_sequences.StudentHistories(
        files["interactions"], files["roster"], config.school_year_start_month
    )
    boundary = histories.good | "SplitBoundary" >> splits.SplitBoundary(
        config.split_timestamp(), config.school_year_start_month, config.split_quantile
    )
    vocab = (histories.good, boundary) | "BuildVocabulary" >> vocabulary.BuildVocabulary(
        config.vocab_size
    )
    _ = vocab | "WriteVocab" >> beam.Map(vocabulary.write_vocab_json, _to_dir(out, "vocab.json"))
    tokens = (histories.good, boundary, vocab) | "SplitAndTokenize" >> model_rows.SplitAndTokenize(
        config.validation_fraction
    )
    classroom_sizes = histories.good | "ClassroomSizes" >> beam.FlatMap(
        model_rows.history_classroom_sizes,
        beam.pvalue.AsSingleton(boundary),
        config.validation_fraction,
    )
    individual = tokens.good | "IndividualRows" >> model_rows.IndividualRows(config.row_length)
    study = tokens.good | "StudyRows" >> model_rows.StudyRows(
        config.row_length,
        config.segment_length,
        config.num_packings,
        config.seed,
        buckets,
        config.interactions_per_bucket,
        classroom_sizes,
    )
    individual_counts = individual | "WriteIndividual" >> write_rows.WriteRows(
        _to_dir(out, "individual"), "individual", config.row_length, config.rows_per_shard, config.seed
    )
    study_counts = study.good | "WriteStudy" >> write_rows.WriteRows(
        _to_dir(out, "study"), "study", config.row_length, config.rows_per_shard, config.seed
    )
    _ = tokens.students_csv | "WriteStudents" >> beam.io.WriteToText(
        _to_dir(out, "students"),
        file_name_suffix=".csv",
        shard_name_template="",
        header=",".join(model_rows.STUDENTS_CSV_COLUMNS),
    )
    dead_letters = (
        interactions.dead_letter,
        roster.dead_letter,
        school_records.dead_letter,
        schools.dead_letter,
        histories.dead_letter,
    ) | "AllDeadLetters" >> beam.Flatten()
    _ = (
        dead_letters
        | "DeadLetterJson" >> beam.Map(read_raw.dead_letter_json)
        | "WriteDeadLetters"
        >> beam.io.WriteToText(_to_dir(out, "dead_letter", "dead_letters"), file_name_suffix=".jsonl")
    )
    boundary_counter = boundary | "BoundaryCounter" >> beam.Map(lambda t: {"split_timestamp": t})
    bucket_counter = buckets | "BucketCounter" >> beam.Map(lambda n: {"max/student_buckets": n})
    _ = (
        interactions.stats,
        roster.stats,
        school_records.stats,
        schools.stats,
        histories.stats,
        tokens.stats,
        individual_counts,
        study_counts,
        boundary_counter,
        bucket_counter,
        study.stats,
    ) | "AllCounters" >> beam.Flatten() | "WriteStatistics" >> statistics.WriteStatistics(out)


def default_beam_options(beam_args: list | None = None) -> PipelineOptions:
    """Beam options from command-line style args; the DirectRunner unless a runner is named."""
    args = list(beam_args or [])
    if not any(a == "--runner" or a.startswith("--runner=") for a in args):
        args.append("--runner=DirectRunner")
    return PipelineOptions(args)


def make_pipeline(options: PipelineOptions, package_folder: str | None = None) -> beam.Pipeline:
    """A Beam pipeline for ``options``; the DirectRunner runs on its in-process batch engine.

    Beam's DirectRunner first tries the Prism runner, which downloads a binary: on an offline
    machine that fails and falls back. Naming the FnApiRunner (the DirectRunner's batch engine)
    skips that; ``--direct_num_workers`` / ``--direct_running_mode`` still apply.
    """
    from apache_beam.options.pipeline_options import StandardOptions

    runner = options.view_as(StandardOptions).runner
    if runner in (None, "DirectRunner", "direct"):
        from apache_beam.runners.portability.fn_api_runner import fn_runner

        return beam.Pipeline(runner=fn_runner.FnApiRunner(), options=options)
    if package_folder is not None:
        options = job_submission.with_worker_package(options, package_folder)
    return beam.Pipeline(options=options)


def build_dataset(config: PipelineConfig, beam_options: PipelineOptions | None = None) -> dict:
    """Runs the dataset job and returns the stats (the content of ``stats.json``); with Beam's
    ``--dry_run=True`` (DataflowRunner) builds the job offline and returns
    ``job_submission.dry_run``'s summary instead.

    The job writes into a temporary folder beside ``config.output_dir`` and puts it in its place
    only when everything is written and checked (``output_folder``).

    Raises:
      read_raw.InputError: an input file cannot be used (before anything runs).
      output_folder.OutputDirError: the output folder holds other files (before anything runs).
      EmptySplitError: a split asked for holds no interaction (the output folder is unchanged).
      ValueError: inconsistent options.
    """
    config.validate()
    options = beam_options if beam_options is not None else default_beam_options()
    if job_submission.is_dry_run(options):
        # Nothing listed, read or written: the graph lists its inputs when it runs.
        work = output_folder.temporary_sibling(config.output_dir)
        return job_submission.dry_run(
            options, lambda p: build_pipeline(p, dataclasses.replace(config, output_dir=work))
        )
    inputs = inspect_inputs(config)
    input_paths = [f.path for files in (inputs.interactions, inputs.roster, inputs.schools) for f in files]
    output_folder.check_output_dir(config.output_dir, config.overwrite, input_paths)
    work = output_folder.temporary_sibling(config.output_dir)
    try:
        for folder in ("", "individual", "study", "dead_letter"):
            FileSystems.mkdirs(_to_dir(work, folder))
        with FileSystems.create(_to_dir(work, output_folder.CONFIG_FILE)) as handle:
            handle.write(json.dumps(dataclasses.asdict(config), indent=1).encode("utf-8"))
        with tempfile.TemporaryDirectory(prefix="study-worker-package-") as package:
            with make_pipeline(options, package) as pipeline:
                build_pipeline(pipeline, dataclasses.replace(config, output_dir=work), inputs)
        with FileSystems.open(_to_dir(work, "stats.json")) as handle:
            stats = json.loads(handle.read().decode("utf-8"))
        if not config.allow_empty_split:
            split_check.check_splits(config, stats)
        output_folder.replace_folder(work, config.output_dir)
    finally:
        output_folder.remove(work)
    return stats


# ---------------------------------------------------------------------------------------------
# Command line.

_DEFAULTS = PipelineConfig(interactions="", roster="", output_dir="")


def define_flags() -> None:
    """Command-line flags of the job (defined only when run as a program, to keep imports clean)."""
    flags.DEFINE_string("interactions", None, "Interactions file(s): comma-separated paths or globs.")
    flags.DEFINE_string("roster", None, "Roster file (CSV or Parquet).")
    flags.DEFINE_string("schools", None, "Optional schools file (school -> district, wealth).")
    flags.DEFINE_string("output_dir", None, "Output directory (local or any Beam filesystem).")
    flags.DEFINE_string("split_date", None, "Train/later boundary, YYYY-MM-DD (default: 2nd school year).")
    flags.DEFINE_integer(
        "split_time", None, "Train/later boundary in the unit of the timestamps (epoch seconds, counter)."
    )
    flags.DEFINE_float(
        "split_quantile", None, "Train/later boundary: the time before which this share of the kept "
        "interactions falls, in (0, 1)."
    )
    flags.DEFINE_boolean(
        "overwrite", False, "Replace --output_dir even when it holds files that this job did not write."
    )
    flags.DEFINE_boolean(
        "allow_empty_split", False, "Write the output even when a split asked for holds no interaction."
    )
    flags.DEFINE_float("validation_fraction", _DEFAULTS.validation_fraction, "Later students in validation.")
    flags.DEFINE_integer("vocab_size", _DEFAULTS.vocab_size, "Items in the vocabulary (v).")
    flags.DEFINE_integer("row_length", _DEFAULTS.row_length, "Row length c.")
    flags.DEFINE_integer("segment_length", _DEFAULTS.segment_length, "STUDY segment length s <= c.")
    flags.DEFINE_integer("num_packings", _DEFAULTS.num_packings, "Training packings of STUDY rows.")
    flags.DEFINE_integer("seed", _DEFAULTS.seed, "Seed of the packings and the shard shuffle.")
    flags.DEFINE_integer(
        "school_year_start_month", _DEFAULTS.school_year_start_month, "First month of a school year."
    )
    flags.DEFINE_integer("rows_per_shard", _DEFAULTS.rows_per_shard, "Rows per TFRecord shard.")
    flags.DEFINE_integer(
        "chunk_mb", _DEFAULTS.chunk_bytes >> 20, "MiB of an input file read and validated at once."
    )
    flags.DEFINE_integer(
        "split_mb", _DEFAULTS.split_bytes >> 20, "CSV files are read in byte ranges of this many MiB, "
        "in parallel."
    )
    flags.DEFINE_integer(
        "student_buckets", None, "Fixed number of student / classroom buckets (default: one per "
        "--interactions_per_bucket interaction lines)."
    )
    flags.DEFINE_integer(
        "interactions_per_bucket", _DEFAULTS.interactions_per_bucket, "Interaction lines per student "
        "bucket when --student_buckets is not given: bounds the largest grouped element."
    )
    flags.DEFINE_boolean(
        "dry_run", False, "DataflowRunner: build the job offline (nothing listed, read or written) "
        "and print its step count and staged files instead of submitting it."
    )


FLAGS = flags.FLAGS


def unknown_flags(args: list) -> list:
    """The ``--names`` in ``args`` that are not Beam pipeline options (of any runner)."""
    known = PipelineOptions([]).get_all_options()
    given = PipelineOptions(args).get_all_options(retain_unknown_options=True)
    return [f"--{name}" for name in given if name not in known]


def _parse_flags(argv: list) -> list:
    """absl parses the job's flags; the rest must be Beam pipeline options, else exit 2.

    ``--help`` prints the job's flags and exits 0; a bad flag value or a missing required flag is one
    ``error: ...`` line and exit 2."""
    cli.exit_if_help(argv, FLAGS)
    try:
        rest = FLAGS(argv, known_only=True)
    except flags.Error as error:
        cli.fail(cli.flag_error_message(error, argv, FLAGS))
    missing = [f"--{name}" for name in ("interactions", "roster", "output_dir") if not FLAGS[name].value]
    if missing:
        cli.fail(f"{', '.join(missing)} required: the interactions and roster files and the output folder "
                 "(`--help` lists the flags)")
    unknown = unknown_flags(rest[1:])
    if unknown:
        named = []
        for name in unknown:
            close = difflib.get_close_matches(name[2:], list(FLAGS), n=1)
            named.append(name + (f" (did you mean --{close[0]}?)" if close else ""))
        print(
            f"error: unknown flag {', '.join(named)}: neither a flag of this job nor a Beam pipeline "
            "option. See --helpshort for the job's flags.",
            file=sys.stderr,
        )
        sys.exit(2)
    return rest


def main(argv: list) -> None:
    config = PipelineConfig(
        interactions=FLAGS.interactions,
        roster=FLAGS.roster,
        schools=FLAGS.schools,
        output_dir=FLAGS.output_dir,
        split_date=FLAGS.split_date or None,
        split_time=FLAGS.split_time,
        split_quantile=FLAGS.split_quantile,
        allow_empty_split=FLAGS.allow_empty_split,
        overwrite=FLAGS.overwrite,
        validation_fraction=FLAGS.validation_fraction,
        vocab_size=FLAGS.vocab_size,
        row_length=FLAGS.row_length,
        segment_length=FLAGS.segment_length,
        num_packings=FLAGS.num_packings,
        seed=FLAGS.seed,
        school_year_start_month=FLAGS.school_year_start_month,
        rows_per_shard=FLAGS.rows_per_shard,
        chunk_bytes=FLAGS.chunk_mb << 20,
        split_bytes=FLAGS.split_mb << 20,
        student_buckets=FLAGS.student_buckets,
        interactions_per_bucket=FLAGS.interactions_per_bucket,
    )
    beam_args = argv[1:] + (["--dry_run=True"] if FLAGS.dry_run else [])
    try:
        stats = build_dataset(config, default_beam_options(beam_args))
    except (read_raw.InputError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    if FLAGS.dry_run:
        print(f"dry run: {stats['runner']} job of {stats['steps']} steps, nothing submitted")
        print("staged files: " + (", ".join(stats["staged_files"]) or "none"))
        return
    print(statistics.stats_markdown(stats))


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=_parse_flags)
