"""Micro P/R/F1 over non-"None" labels and the per-relation table, against hand computation."""
from __future__ import annotations

import numpy as np
import pytest

import json

from dfma.contract.labels import LabelMap
from dfma.metrics import evaluate, format_report, micro_prf, per_relation

NAMES = ["None", "A", "B", "C"]
N, A, B, C = 0, 1, 2, 3
#                  0  1  2  3  4  5  6
GOLD = np.array([A, A, B, N, N, B, A])
PRED = np.array([A, B, B, A, N, N, N])
# guessed (pred != None): 0 1 2 3 -> 4; gold != None: 0 1 2 5 6 -> 5; correct: 0 (A) and 2 (B) -> 2


def test_micro_hand_computed():
    p, r, f = micro_prf(GOLD, PRED, none_id=N)
    assert (p, r) == (0.5, 0.4)
    assert f == pytest.approx(2 * 0.5 * 0.4 / 0.9)
    rep = evaluate(GOLD.tolist(), PRED.tolist(), NAMES)
    assert (rep.precision, rep.recall) == (0.5, 0.4) and rep.f1 == pytest.approx(0.444444, abs=1e-6)
    assert (rep.n_pred, rep.n_gold, rep.n_correct, rep.n_samples) == (4, 5, 2, 7)
    assert rep.accuracy == pytest.approx(3 / 7)      # 0, 2 and 4 (None == None) agree


def test_per_relation_hand_computed():
    rows = {r.name: r for r in evaluate(GOLD, PRED, NAMES).per_relation}
    assert list(rows) == ["A", "B", "C"]             # "None" is not a row
    a, b, c = rows["A"], rows["B"], rows["C"]
    # A: predicted at 0, 3 (1 correct); gold at 0, 1, 6
    assert (a.predicted, a.correct, a.support, a.precision) == (2, 1, 3, 0.5)
    assert a.recall == pytest.approx(1 / 3) and a.f1 == pytest.approx(0.4)
    # B: predicted at 1, 2 (1 correct); gold at 2, 5
    assert (b.predicted, b.correct, b.support, b.precision, b.recall, b.f1) == (2, 1, 2, 0.5, 0.5, 0.5)
    assert (c.predicted, c.support, c.precision, c.recall, c.f1) == (0, 0, 0.0, 0.0, 0.0)


def test_none_agreement_is_not_credited():
    gold = [N, N, A]
    assert micro_prf(gold, [N, N, N], N) == (0.0, 0.0, 0.0)       # no guesses: P = 0 by convention
    assert micro_prf(gold, [A, N, A], N) == (0.5, 1.0, pytest.approx(2 / 3))
    assert micro_prf([N, N], [N, N], N) == (0.0, 0.0, 0.0)
    assert micro_prf([A, B], [A, B], N) == (1.0, 1.0, 1.0)


def test_none_id_need_not_be_zero():
    names = ["A", "None"]
    rep = evaluate([0, 1, 0], [0, 0, 1], names)   # guessed 2, gold 2, correct 1
    assert (rep.precision, rep.recall, rep.f1) == (0.5, 0.5, 0.5)


def test_format_report_table():
    text = format_report(evaluate(GOLD, PRED, NAMES))
    lines = text.splitlines()
    assert lines[0].split() == ["relation", "P", "(%)", "R", "(%)", "F1", "(%)", "support", "predicted"]
    assert lines[2].split() == ["A", "50.00", "33.33", "40.00", "3", "2"]
    assert lines[3].split() == ["B", "50.00", "50.00", "50.00", "2", "2"]
    assert not any(line.startswith("C ") for line in lines)            # no gold, no prediction
    assert "C " in format_report(evaluate(GOLD, PRED, NAMES), include_empty=True)
    assert lines[-2].split() == ["micro", "(non-None)", "50.00", "40.00", "44.44", "5", "4"]
    assert lines[-1] == "accuracy (all labels, 7 samples): 42.86%"


def test_tuple_form_and_label_map():
    labels = LabelMap.from_list(NAMES)
    rows = per_relation(GOLD, PRED, labels)
    assert rows == evaluate(GOLD, PRED, NAMES).per_relation
    text = format_report(micro_prf(GOLD, PRED, labels.none_id), rows)
    assert text.splitlines()[-1].split() == ["micro", "(non-None)", "50.00", "40.00", "44.44", "5", "4"]
    d = json.loads(json.dumps(evaluate(GOLD, PRED, labels).to_dict()))
    assert d["per_relation"][0] == {"name": "A", "precision": 0.5, "recall": pytest.approx(1 / 3),
                                    "f1": pytest.approx(0.4), "support": 3, "predicted": 2, "correct": 1}


def test_input_validation():
    with pytest.raises(ValueError, match="length"):
        evaluate([0, 1], [0], NAMES)
    with pytest.raises(ValueError, match="outside"):
        evaluate([0, 4], [0, 1], NAMES)
    with pytest.raises(ValueError, match="None"):
        evaluate([0], [0], ["A", "B"])
    with pytest.raises(ValueError, match="class ids"):
        micro_prf([0.5], [1.0], 0)
