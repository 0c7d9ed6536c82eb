"""bench.homework's --set: it changes exactly the named literal of a reference function, or stops."""

import argparse
import ast

import pytest
import torch

from bench import homework


def test_parse_setting():
    assert homework.parse_setting("train_hard_pseudo.rounds=5") == ("train_hard_pseudo", "rounds", 5)
    assert homework.parse_setting("f.flag=True") == ("f", "flag", True)
    for bad in ("rounds=5", "f.rounds", "f.rounds=five"):
        with pytest.raises(argparse.ArgumentTypeError):
            homework.parse_setting(bad)


def test_apply_setting_changes_assignments_tuples_and_keywords_only_by_name():
    tree = ast.parse("def f():\n    rounds, steps = 7, 200\n    lr = 0.1\n"
                     "    g(x, augment=False, rounds=1)\n")
    function = tree.body[0]
    assert homework._apply_setting(function, "rounds", 5) == 2  # the tuple element and the keyword
    assert homework._apply_setting(function, "augment", True) == 1
    assert homework._apply_setting(function, "missing", 1) == 0
    assert ast.unparse(function).split("\n")[1:] == [
        "    rounds, steps = (5, 200)", "    lr = 0.1", "    g(x, augment=True, rounds=5)"]


def test_load_reference_applies_settings_to_the_notebooks_functions():
    ref = homework.load_reference(settings=[("train_hard_pseudo", "augment_pseudo", True),
                                            ("train_hard_pseudo", "rounds", 2)])
    calls = []
    ref["fit_steps"] = lambda model, *args, **kwargs: calls.append(kwargs) or model  # no training
    x, y = torch.zeros(10, 1, 28, 28), torch.arange(10)
    model = ref["train_hard_pseudo"](x, y, torch.zeros(20, 1, 28, 28))
    rounds = [c for c in calls if "augment_pseudo" in c]
    assert len(rounds) == 2 and all(c["augment_pseudo"] is True for c in rounds)
    assert len(model.round_states) == 3  # the baseline and two rounds
    with pytest.raises(SystemExit, match="no literal 'nope' in the reference's train_hard_pseudo"):
        homework.load_reference(settings=[("train_hard_pseudo", "nope", 1)])
    with pytest.raises(SystemExit, match="no literal 'rounds' in the reference's no_such_function"):
        homework.load_reference(settings=[("no_such_function", "rounds", 1)])
