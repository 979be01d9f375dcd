"""The check after the dataset job: every split the options ask for holds an interaction.

An empty split is an ``EmptySplitError`` whose message says why (every row rejected, a split point
outside the data, the validation fraction) and what to pass instead.
"""

import datetime

from data_pipeline import splits


class EmptySplitError(ValueError):
    """A split the options ask for holds no interaction; the message says why and what to do."""


def _most_frequent_reasons(stats: dict, count: int = 3) -> list:
    """``"reason: n (input kind)"`` of the most frequent dead-letter reasons, most frequent first."""
    reasons = [
        (-n, reason, kind)
        for kind, entry in stats["inputs"].items()
        for reason, n in entry["dead_letter_reasons"].items()
    ]
    return [f"{reason}: {-n:,} ({kind})" for n, reason, kind in sorted(reasons)[:count]]


def _describe_time(timestamp: int) -> str:
    moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.timezone.utc)
    return f"{timestamp} ({moment:%Y-%m-%dT%H:%M:%SZ} if read as epoch seconds)"


def check_splits(config, stats: dict) -> None:
    """Raises ``EmptySplitError`` when a split that ``config`` asks for holds no interaction."""
    counts = {name: entry["interactions"] for name, entry in stats["splits"].items()}
    empty = [name for name in config.requested_splits() if not counts[name]]
    if not empty:
        return
    train = counts[splits.SPLIT_NAMES[splits.TRAIN]]
    kept = sum(counts.values())
    later = kept - train
    boundary = _describe_time(stats.get("split_timestamp", 0))
    lines = [f"empty split: {', '.join(empty)} (no interaction of the {kept:,} kept falls there)."]
    if not kept:
        lines.append("No interaction was kept: every row was rejected (see the reasons below).")
    elif not later:
        which = "the split boundary" if config.split_timestamp() is not None else (
            "the default split boundary (the start of the second school year after the earliest "
            "interaction)"
        )
        if config.split_quantile is not None:
            which = f"the --split_quantile={config.split_quantile} boundary (equal timestamps)"
        lines.append(
            f"Every kept interaction ({kept:,}) is before {which}, {boundary}. Give a split point "
            "inside the data: --split_date=YYYY-MM-DD, --split_time=N (a number in the unit of the "
            "timestamps, e.g. for epoch seconds or an event counter) or --split_quantile=0.8 (the "
            "time before which 80% of the kept interactions fall)."
        )
    elif not train:
        lines.append(
            f"Every kept interaction ({kept:,}) is at or after the split boundary {boundary}; give a "
            "later --split_date, --split_time or a --split_quantile."
        )
    else:
        lines.append(
            f"The later period's {later:,} interactions all went to the other split by student "
            f"(--validation_fraction={config.validation_fraction}); use more students, or "
            "--validation_fraction=0 (no validation split) or 1 (no test split)."
        )
    reasons = _most_frequent_reasons(stats)
    if reasons:
        lines.append("Most frequent dead-letter reasons: " + ", ".join(reasons) + ".")
    lines.append(
        "Pass --allow_empty_split to write the output anyway (dead_letter/ holds the rejected rows)."
    )
    raise EmptySplitError("\n".join(lines))
