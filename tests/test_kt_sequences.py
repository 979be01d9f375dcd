"""The DKVMN 3-line reader (hand-written files, every kind of bad line named by file and line), fold files of the
releases, windowing, and the synthetic release's concept list."""

import os

import numpy as np
import pytest

from study.data import kt_sequences as kts

KT = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "kt")


def write(tmp_path, text):
    path = tmp_path / "seq.csv"
    path.write_text(text)
    return str(path)


def test_reads_blocks_with_trailing_commas_and_blank_lines(tmp_path):
    path = write(tmp_path, "3\n5,2,5,\n1,0,1,\n\n1\n7\n0\n")
    (q0, a0), (q1, a1) = kts.read_sequences(path, num_questions=7)
    assert q0.tolist() == [5, 2, 5] and a0.tolist() == [1, 0, 1]
    assert q1.tolist() == [7] and a1.tolist() == [0]


@pytest.mark.parametrize("text, message", [
    ("3\n5,2\n1,0,1\n", r"line 2: the length line 1 says 3 but there are 2 question ids"),
    ("2\n5,2\n1,0,1\n", r"line 3: the length line 1 says 2 but there are 3 answers"),
    ("2\n5,x\n1,0\n", r"line 2: question ids must be comma-separated integers, found 'x'"),
    ("2\n5,2\n1,2\n", r"line 3: answers must be 0 or 1, found 2"),
    ("2\n5,9\n1,0\n", r"line 2: question ids must lie in 1..7, found 9"),
    ("2\n0,3\n1,0\n", r"line 2: question ids must lie in 1..7, found 0"),
    ("two\n5,2\n1,0\n", r"line 1: expected a sequence length"),
    ("1\n5\n1\n\n2\n5,2\n", r"not a multiple of 3 .* starts at line 5"),
])
def test_bad_lines_name_file_line_and_field(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ValueError, match=message) as error:
        kts.read_sequences(path, num_questions=7)
    assert path in str(error.value)


def test_padded_cuts_long_sequences_into_windows():
    sequences = [(np.array([1, 2, 3, 4, 5]), np.array([1, 0, 1, 1, 0])), (np.array([6]), np.array([1]))]
    batch = kts.padded(sequences, window=2)
    assert batch["question"].tolist() == [[1, 2], [3, 4], [5, 0], [6, 0]]
    assert batch["answer"].tolist() == [[1, 0], [1, 1], [0, 0], [1, 0]]
    assert batch["mask"].tolist() == [[True, True], [True, True], [True, False], [True, False]]
    assert batch["student"].tolist() == [0, 0, 0, 1]


def test_fold_paths_and_errors(tmp_path):
    spec = kts.DATASETS["assist2009"]
    with pytest.raises(FileNotFoundError, match="assist2009_updated_train1.csv does not exist"):
        kts.fold_path(spec, str(tmp_path), "train", 1)
    with pytest.raises(ValueError, match="fold 6 does not exist"):
        kts.fold_path(spec, str(tmp_path), "validation", 6)
    with pytest.raises(ValueError, match="unknown split"):
        kts.fold_path(spec, str(tmp_path), "dev", 1)


def test_release_folds_match_the_published_counts():
    directory = os.path.join(KT, "dkvmn_assist2009_updated")
    if not os.path.isdir(directory):
        pytest.skip("the ASSIST2009 release is not in ../shared/data")
    spec = kts.DATASETS["assist2009"]
    train = kts.read_sequences(kts.fold_path(spec, directory, "train", 1), spec.num_questions)
    valid = kts.read_sequences(kts.fold_path(spec, directory, "validation", 1), spec.num_questions)
    test = kts.read_sequences(kts.fold_path(spec, directory, "test", 1), spec.num_questions)
    # SOURCE.txt: train1 2,291 sequences / 176,684 interactions, valid1 630, test 1,230 / 101,419.
    assert (len(train), sum(len(q) for q, _ in train)) == (2291, 176_684)
    assert len(valid) == 630
    assert (len(test), sum(len(q) for q, _ in test)) == (1230, 101_419)


def test_cluster_info_gives_each_question_its_concept(tmp_path):
    path = tmp_path / "cluster_info"
    path.write_text("[3, 0, 1]\n0\t[2]\n")
    assert kts.read_cluster_info(str(path)).tolist() == [3, 0, 1]
    path.write_text("3, 0, 1\n")
    with pytest.raises(ValueError, match="line 1: expected a list"):
        kts.read_cluster_info(str(path))
