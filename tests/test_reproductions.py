"""The reproduction harness's own logic (the reproductions themselves need the real corpora)."""

from __future__ import annotations

import numpy as np
import pytest

from reproductions import newsgroups, ptb
from reproductions.runs import Run, epoch_table, finished, load


def write_run(folder, rows):
    (folder / "out").mkdir(parents=True)
    lines = ["epoch,step,lr,loss,accuracy,val_loss,val_accuracy,seconds"]
    lines += [",".join(str(v) for v in row) for row in rows]
    (folder / "out" / "metrics.csv").write_text("\n".join(lines) + "\n")


def test_runs_load_metrics_and_tabulate(tmp_path):
    write_run(
        tmp_path / "a",
        [(1, 10, 0.001, 3.0, 0.05, 2.99, 0.055, 80.5), (2, 20, 0.001, 2.0, 0.4, 1.5, 0.61, 70.0)],
    )
    write_run(tmp_path / "b", [(1, 10, 0.001, 1.2, 0.6, 0.9, 0.78, 81.0)])
    (tmp_path / "b" / "seconds.txt").write_text("95.0\n")
    a, b = (load(Run(name, tmp_path / "spec.yaml", tmp_path / name)) for name in "ab")
    assert finished(a) and not finished(Run("c", tmp_path, tmp_path / "c"))
    assert a.seconds == pytest.approx(150.5)  # no seconds.txt: the epochs' own times
    assert b.seconds == 95.0
    assert a.best("val_accuracy") == (0.61, 2)
    assert a.best("val_loss", mode="min") == (1.5, 2)
    table = epoch_table([a, b], [("val_accuracy", "val acc")]).splitlines()
    assert table[0] == "| epoch | a val acc | b val acc |"
    assert table[2] == "| 1 | 0.055 | 0.78 |"
    assert table[3] == "| 2 | 0.61 |  |"  # b stopped after one epoch


def test_ptb_keeps_the_first_training_examples_only(tmp_path):
    data = tmp_path / "data.npz"
    context = np.arange(40, dtype=np.int32).reshape(10, 4, 1)
    np.savez(
        data,
        context=context,
        labels=np.arange(10),
        val_context=context[:3],
        val_labels=np.arange(3),
        vocabulary=np.array(["<pad>", "a", "b"]),
    )
    ptb.keep_first(data, 4)
    with np.load(data) as arrays:
        assert arrays["context"].shape == (4, 4, 1) and list(arrays["labels"]) == [0, 1, 2, 3]
        assert arrays["val_context"].shape == (3, 4, 1) and len(arrays["vocabulary"]) == 3


@pytest.mark.parametrize("module", [newsgroups, ptb])
def test_unknown_runs_are_refused(module, tmp_path):
    with pytest.raises(SystemExit, match="unknown run"):
        module.main(["--runs", "nope", "--out", str(tmp_path)])


def flat_classifier(vocab: int, dim: int, length: int = 1100) -> int:
    """Parameters after the table: Dense(25) over the flattened ``length x dim`` posts, then
    Dense(20), both with biases."""
    return (length * dim * 25 + 25) + (25 * 20 + 20)


def memn2n(vocab: int, dim: int, memories: int, temporal: bool) -> int:
    """A layer-wise tied MemN2N language model (arXiv 1503.08895 §2.2, §5): one A and one C
    ``[vocab, dim]`` for all hops, the output W ``[dim, vocab]``, the map H ``[dim, dim]``, and
    with temporal encoding T_A and T_C ``[memories, dim]``; the query is a constant."""
    return 3 * vocab * dim + dim * dim + (2 * memories * dim if temporal else 0)


# (trainable, frozen) parameters of each run, by formula from the run's description.
COUNTS = {
    # A 19,000 x 300 table, all rows training (the pad row too: it is a row like the others).
    ("newsgroups", "plain"): (19000 * 300 + flat_classifier(19000, 300), 0),
    # Pad zeroing keeps the pad row in the trainable table (held at 0.0) and counts it there.
    ("newsgroups", "pad_zero"): (19000 * 300 + flat_classifier(19000, 300), 0),
    # GloVe rows frozen; only the <oov> row (the one special token) trains.
    ("newsgroups", "glove"): (1 * 50 + flat_classifier(19000, 50), 18999 * 50),
    ("newsgroups", "glove_tuned"): (19000 * 50 + flat_classifier(19000, 50), 0),
    ("ptb", "temporal"): (memn2n(10001, 150, 150, temporal=True), 0),
    ("ptb", "no_temporal"): (memn2n(10001, 150, 150, temporal=False), 0),
    # The paper's recipe (relu_half, linear start, SGD) adds no parameters.
    ("ptb", "paper"): (memn2n(10001, 150, 150, temporal=True), 0),
}


def test_specs_of_the_runs_have_the_parameter_counts_of_their_descriptions():
    from nnspec.compiler import compile_file

    specs = {("newsgroups", k): v for k, v in newsgroups.SPECS.items()}
    specs |= {("ptb", k): v for k, v in ptb.SPECS.items()}
    assert sorted(specs) == sorted(COUNTS)
    for key, spec in specs.items():
        program, _ = compile_file(spec)
        assert (program.trainable_count, program.frozen_count) == COUNTS[key], key
    assert COUNTS["newsgroups", "plain"][0] == 13_950_545  # "~14M parameters" (README)
