"""Reserved token ids shared by the data pipeline, the models, the evaluator and serving.

This is the one place these ids are defined. Item ids of the vocabulary start at
``FIRST_ITEM_ID`` in the order of the vocabulary (most frequent training item first).
"""

PAD = 0  # padding: never attended to, never a target
OOV = 1  # every item outside the top-v vocabulary; a target of training, a miss in evaluation
SEP = 2  # separator between two students' segments in a STUDY row; never attended to, never a target
FIRST_ITEM_ID = 3

RESERVED = {"pad": PAD, "oov": OOV, "sep": SEP}
NUM_RESERVED = FIRST_ITEM_ID


def is_item(token_ids):
    """True where a token is an interaction (an item or OOV): not padding, not a separator.

    Works on NumPy and JAX arrays alike.
    """
    return (token_ids != PAD) & (token_ids != SEP)
