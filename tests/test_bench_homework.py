"""bench.homework's --set: it changes exactly the named literal of a reference function, or stops."""

import argparse
import ast
import json

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


def test_fixmatch_stage_takes_its_settings_and_the_same_data(monkeypatch):
    settings = [("fixmatch", "threshold", 0.9), ("train_hard_pseudo", "rounds", 5)]
    config = homework.fixmatch_config(settings)
    assert config.threshold == 0.9 and config.steps == homework.FixMatchConfig().steps
    homework.load_reference(settings=[("fixmatch", "threshold", 0.9)])  # not a notebook literal: no stop
    with pytest.raises(SystemExit, match="no setting tau"):
        homework.fixmatch_config([("fixmatch", "tau", 0.9)])
    seen = {}

    def fake_fixmatch(model, x_lab, y_lab, x_unlab, seed, config):
        seen.update(model=type(model).__name__, labeled=len(x_lab), unlabeled=len(x_unlab), seed=seed,
                    config=config)
        return model.eval()

    monkeypatch.setattr(homework, "train_fixmatch", fake_fixmatch)
    ref = dict.fromkeys(["train_baseline", "train_hard_pseudo", "train_soft_pseudo"])  # not run
    x, y, x_unlab = torch.zeros(10, 1, 28, 28), torch.arange(10), torch.zeros(30, 1, 28, 28)
    out = homework.run_reference(ref, x, y, x_unlab, seed=3, evaluate=lambda model: 42.0,
                                 stages=["fixmatch"], config=config)
    assert list(out) == ["fixmatch"] and out["fixmatch"][0] == 42.0
    assert seen == {"model": "SmallCNN", "labeled": 10, "unlabeled": 30, "seed": 3, "config": config}


def test_every_seed_runs_the_chosen_stages(monkeypatch, tmp_path, capsys):
    calls = []

    def fake_reference(ref, x_lab, y_lab, x_unlab, seed, evaluate, stages, config):
        calls.append((seed, list(stages), len(x_lab)))
        return {"hard pseudo": (90.0 + seed, 1.0)}

    monkeypatch.setattr(homework, "run_reference", fake_reference)
    monkeypatch.setattr(homework, "load_reference", lambda settings: {})
    monkeypatch.setattr(homework, "torchvision_datasets", lambda root, data, dataset: None)
    saved = tmp_path / "runs.jsonl"
    homework.main(["--reference-only", "--stages", "hard", "--seeds", "3", "--datasets", "mnist-5k",
                   "--save", str(saved)])
    assert calls == [(0, ["hard"], 100), (1, ["hard"], 100), (2, ["hard"], 100)]
    assert "hard pseudo (b) reference     acc   91.00 ±  1.00" in capsys.readouterr().out
    assert len(saved.read_text().splitlines()) == 3
    assert "fixmatch_config" not in json.loads(saved.read_text().splitlines()[0])
    homework.main(["--reference-only", "--stages", "fixmatch", "--seeds", "1", "--datasets", "mnist-5k",
                   "--set", "fixmatch.threshold=0.9", "--save", str(saved)])
    record = json.loads(saved.read_text().splitlines()[-1])
    assert record["fixmatch_config"]["threshold"] == 0.9 and record["settings"] == ["fixmatch.threshold=0.9"]
    assert record["fixmatch_config"]["steps"] == homework.FixMatchConfig().steps  # defaults saved too


def test_report_over_files_with_different_stages(capsys):
    def run(seed, **b):
        return {"dataset": "mnist-5k", "seed": seed, "reduced": False, "settings": [], "b": b}

    homework.report([run(0, **{"hard pseudo": (94.0, 40.0)}), run(1, **{"hard pseudo": (96.0, 42.0)}),
                     run(0, fixmatch=(97.0, 150.0))])
    out = capsys.readouterr().out
    assert "over seeds [0, 1]" in out
    assert "hard pseudo (b) reference     acc   95.00 ±  1.41  time   41.00 ±  1.41" in out
    assert "fixmatch    (b) consistency   acc   97.00 ±  0.00  time  150.00 ±  0.00  (seeds [0])" in out
