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


def test_specs_of_the_runs_exist_and_validate():
    from nnspec.compiler import compile_file

    for spec in [*newsgroups.SPECS.values(), *ptb.SPECS.values()]:
        program, _ = compile_file(spec)
        assert program.trainable_count > 0
