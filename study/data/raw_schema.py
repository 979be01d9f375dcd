"""Column names of the raw input, canonical and official-STUDY aliases (README, "Raw data").

The generator writes these; the Beam pipeline reads them. Timestamps are ISO dates, ISO datetimes
or epoch seconds and are stored as int64 seconds since the epoch (UTC).
"""

# Canonical interactions file.
INTERACTION_COLUMNS = ("student_id", "item_id", "timestamp")
INTERACTION_OPTIONAL = ("duration_s", "correct")

# Canonical roster file.
ROSTER_COLUMNS = ("student_id", "school_id", "grade")
ROSTER_OPTIONAL = ("classroom_id", "district_id", "wealth_indicator")
# Required roster columns that another column makes optional: with classroom_id the classroom key
# needs no grade (a row without a classroom_id is then unusable), and the grade is unknown
# (``row_format.grade_code("")`` = 0, the row format's unknown grade).
ROSTER_REQUIRED_UNLESS = {"grade": "classroom_id"}

# Optional school file (official release): school -> district.
SCHOOL_COLUMNS = ("school_id", "district_id")
SCHOOL_OPTIONAL = ("wealth_indicator",)

# Official STUDY release column -> canonical column, per file kind.
INTERACTION_ALIASES = {
    "StudentID": "student_id",
    "SHLF_NUM": "item_id",
    "Date": "timestamp",
    "Seconds Read": "duration_s",
}
ROSTER_ALIASES = {
    "StudentID": "student_id",
    "OrgnID": "school_id",
    "GRADE_LVL_NBR": "grade",
}
SCHOOL_ALIASES = {
    "OrgnID": "school_id",
    "Parent_Building_ID": "district_id",
}

# School years start on this month (1 = January): 8 means a school year runs Aug 1 - Jul 31 and
# is named by the calendar year it starts in.
SCHOOL_YEAR_START_MONTH = 8


def school_year(epoch_seconds: int, start_month: int = SCHOOL_YEAR_START_MONTH) -> int:
    """The school year (named by its starting calendar year) of a UTC epoch timestamp."""
    import datetime

    day = datetime.datetime.fromtimestamp(int(epoch_seconds), tz=datetime.timezone.utc)
    return day.year if day.month >= start_month else day.year - 1
