"""The dataset job: raw logs -> splits, vocabulary, Individual and STUDY rows, stats, dead letters.

Usage::

    python -m data_pipeline.build_dataset --interactions='logs/*.csv' --roster=roster.csv \\
        [--schools=schools.csv] --output_dir=processed [--split_date=2021-08-01] \\
        [--vocab_size=2000 --row_length=65 --segment_length=65 --num_packings=4 --seed=0] \\
        [--runner=DataflowRunner --project=... --region=... --temp_location=gs://...]

Any flag this module does not define is passed to Beam as a pipeline option; the runner defaults
to the DirectRunner.

Output directory::

    individual/  study/        TFRecord shards + tfds metadata, one tfds dataset each
    vocab.json                 study.data.vocabulary
    students.csv               per-student facts for evaluation breakdowns
    dead_letter/*.jsonl        rejected input rows with a reason
    stats.json, stats.md       Table-3-style counts, rows, dead letters, OOV shares
    pipeline_config.json       the options of the run
"""

import dataclasses
import json
import sys

import apache_beam as beam
from absl import app
from absl import flags
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from data_pipeline import model_rows
from data_pipeline import read_raw
from data_pipeline import splits
from data_pipeline import statistics
from data_pipeline import student_sequences
from data_pipeline import vocabulary
from data_pipeline import write_rows
from study.data import raw_schema
from study.data import row_format


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Options of the dataset job (see the module docstring)."""

    interactions: str  # comma-separated paths / globs, CSV or Parquet
    roster: str
    output_dir: str
    schools: str | None = None
    split_date: str | None = None  # YYYY-MM-DD; default: start of the second school year
    validation_fraction: float = 0.5
    vocab_size: int = 2000  # v: items in the vocabulary, reserved ids not counted
    row_length: int = row_format.DEFAULT_ROW_LENGTH  # c
    segment_length: int = row_format.DEFAULT_ROW_LENGTH  # s <= c
    num_packings: int = 4
    seed: int = 0
    school_year_start_month: int = raw_schema.SCHOOL_YEAR_START_MONTH
    rows_per_shard: int = 20000
    chunk_bytes: int = 64 << 20  # CSV block / Parquet batch size read at once

    def validate(self) -> None:
        if not 1 <= self.segment_length <= self.row_length:
            raise ValueError(
                f"segment_length={self.segment_length} must be in [1, row_length={self.row_length}]"
            )
        if not 0.0 <= self.validation_fraction <= 1.0:
            raise ValueError(f"validation_fraction={self.validation_fraction} must be in [0, 1]")
        if self.vocab_size < 0 or self.num_packings < 1 or self.rows_per_shard < 1:
            raise ValueError("vocab_size must be >= 0, num_packings and rows_per_shard >= 1")
        if not 1 <= self.school_year_start_month <= 12:
            raise ValueError("school_year_start_month must be in 1..12")
        if self.split_date is not None:
            splits.parse_split_date(self.split_date)


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


def build_pipeline(pipeline: beam.Pipeline, config: PipelineConfig, inputs: InspectedInputs):
    """Adds the dataset job's stages to ``pipeline``."""
    out = config.output_dir
    chunk = config.chunk_bytes
    interactions = pipeline | "ReadInteractions" >> read_raw.ReadRawFiles(
        inputs.interactions, read_raw.INTERACTIONS, chunk
    )
    roster = pipeline | "ReadRoster" >> read_raw.ReadRawFiles(inputs.roster, read_raw.ROSTER, chunk)
    school_records = pipeline | "ReadSchools" >> read_raw.ReadRawFiles(
        inputs.schools, read_raw.SCHOOLS, chunk
    )
    schools = school_records.good | "SchoolTable" >> read_raw.SchoolTable(
        read_raw.file_paths(inputs.schools)
    )
    histories = (
        interactions.good,
        roster.good,
        schools.good,
    ) | "StudentHistories" >> student_sequences.StudentHistories(
        read_raw.file_paths(inputs.interactions),
        read_raw.file_paths(inputs.roster),
        config.school_year_start_month,
    )
    split_timestamp = splits.parse_split_date(config.split_date) if config.split_date else None
    boundary = histories.good | "SplitBoundary" >> splits.SplitBoundary(
        split_timestamp, config.school_year_start_month
    )
    vocab = (histories.good, boundary) | "BuildVocabulary" >> vocabulary.BuildVocabulary(
        config.vocab_size
    )
    _ = vocab | "WriteVocab" >> beam.Map(vocabulary.write_vocab_json, _to_dir(out, "vocab.json"))
    tokens = (histories.good, boundary, vocab) | "SplitAndTokenize" >> model_rows.SplitAndTokenize(
        config.validation_fraction
    )
    individual = tokens.good | "IndividualRows" >> model_rows.IndividualRows(config.row_length)
    study = tokens.good | "StudyRows" >> model_rows.StudyRows(
        config.row_length, config.segment_length, config.num_packings, config.seed
    )
    individual_counts = individual | "WriteIndividual" >> write_rows.WriteRows(
        _to_dir(out, "individual"), "individual", config.row_length, config.rows_per_shard, config.seed
    )
    study_counts = study | "WriteStudy" >> write_rows.WriteRows(
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
    ) | "AllCounters" >> beam.Flatten() | "WriteStatistics" >> statistics.WriteStatistics(out)


def default_beam_options(beam_args: list | None = None) -> PipelineOptions:
    """Beam options from command-line style args; the DirectRunner unless a runner is named."""
    args = list(beam_args or [])
    if not any(a == "--runner" or a.startswith("--runner=") for a in args):
        args.append("--runner=DirectRunner")
    return PipelineOptions(args)


def make_pipeline(options: PipelineOptions) -> beam.Pipeline:
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
    return beam.Pipeline(options=options)


def build_dataset(config: PipelineConfig, beam_options: PipelineOptions | None = None) -> dict:
    """Runs the dataset job and returns the stats (the content of ``stats.json``).

    Raises:
      read_raw.InputError: an input file cannot be used (before anything runs).
      ValueError: inconsistent options.
    """
    config.validate()
    inputs = inspect_inputs(config)
    out = config.output_dir
    for folder in ("", "individual", "study", "dead_letter"):
        if not FileSystems.exists(_to_dir(out, folder)):
            FileSystems.mkdirs(_to_dir(out, folder))
    with FileSystems.create(_to_dir(out, "pipeline_config.json")) as handle:
        handle.write(json.dumps(dataclasses.asdict(config), indent=1).encode("utf-8"))
    options = beam_options if beam_options is not None else default_beam_options()
    with make_pipeline(options) as pipeline:
        build_pipeline(pipeline, config, inputs)
    with FileSystems.open(_to_dir(out, "stats.json")) as handle:
        return json.loads(handle.read().decode("utf-8"))


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


FLAGS = flags.FLAGS


def _parse_flags(argv: list) -> list:
    """absl parses its flags; everything else is a Beam pipeline option."""
    return FLAGS(argv, known_only=True)


def main(argv: list) -> None:
    for name in ("interactions", "roster", "output_dir"):
        if not FLAGS[name].value:
            raise app.UsageError(f"--{name} is required.")
    config = PipelineConfig(
        interactions=FLAGS.interactions,
        roster=FLAGS.roster,
        schools=FLAGS.schools,
        output_dir=FLAGS.output_dir,
        split_date=FLAGS.split_date,
        validation_fraction=FLAGS.validation_fraction,
        vocab_size=FLAGS.vocab_size,
        row_length=FLAGS.row_length,
        segment_length=FLAGS.segment_length,
        num_packings=FLAGS.num_packings,
        seed=FLAGS.seed,
        school_year_start_month=FLAGS.school_year_start_month,
        rows_per_shard=FLAGS.rows_per_shard,
        chunk_bytes=FLAGS.chunk_mb << 20,
    )
    try:
        stats = build_dataset(config, default_beam_options(argv[1:]))
    except (read_raw.InputError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    print(statistics.stats_markdown(stats))


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=_parse_flags)
