"""fit/train_epoch/evaluate/predict/checkpoints on a real Fashion-MNIST subset, with tiny models."""

import os
from pathlib import Path

import pytest
import torch
from torch import nn

from course_utils import train
from course_utils.data import STATS, Batches, to_float
from course_utils.models import mlp


@pytest.fixture
def small(fashion):
    x, y = fashion
    x = to_float(x, *STATS["fashion-mnist"])
    return (Batches(x[:2000], y[:2000], 100, shuffle=True, seed=0),
            Batches(x[2000:3000], y[2000:3000], 250))


def make(seed=0):
    torch.manual_seed(seed)
    return mlp([784, 32, 10])


def test_fit_learns_and_returns_history(small):
    tr, va = small
    model = make()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    hist = train.fit(model, tr, opt, epochs=3, val_data=va, progress=False)
    assert hist["epoch"] == [1, 2, 3] and len(hist["val_acc"]) == 3 and hist["lr"] == [1e-3] * 3
    assert hist["train_loss"][-1] < hist["train_loss"][0]
    assert hist["val_acc"][-1] > 0.6  # ten classes: chance is 0.1
    assert train.evaluate(model, va)["acc"] == pytest.approx(hist["val_acc"][-1])


def test_fit_is_reproducible(small):
    def run():
        tr = Batches(small[0].x, small[0].y, 100, shuffle=True, seed=0)
        model = make()
        train.fit(model, tr, torch.optim.SGD(model.parameters(), 0.1), epochs=1, progress=False)
        return model[1].weight.detach().clone()

    assert torch.equal(run(), run())


def test_checkpoint_keeps_and_restores_best_epoch(small, tmp_path):
    tr, va = small
    model = make()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    seen = []
    hist = train.fit(model, tr, opt, epochs=4, val_data=va, checkpoint=tmp_path / "best.pt", progress=False,
                     on_step=lambda step: seen.append(step))
    best = hist["best_epoch"]
    assert hist["val_loss"][best - 1] == min(hist["val_loss"])
    assert train.evaluate(model, va)["loss"] == pytest.approx(min(hist["val_loss"]), rel=1e-5)
    assert seen == list(range(1, 4 * len(tr) + 1))
    assert [p.name for p in tmp_path.iterdir()] == ["best.pt"]  # no temp files left


def test_patience_stops_early(small, tmp_path):
    tr, va = small
    model = make()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # cannot improve after epoch 1
    hist = train.fit(model, tr, opt, epochs=10, val_data=va, patience=2, progress=False)
    assert hist["epoch"] == [1, 2, 3]


def test_schedulers_per_epoch_per_batch_and_plateau(small):
    tr, va = small
    model = make()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    step = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    assert train.fit(model, tr, opt, 2, scheduler=step, progress=False)["lr"] == [0.1, 0.05]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    onecycle = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=2 * len(tr))
    train.fit(model, tr, opt, 2, scheduler=onecycle, scheduler_per_batch=True, progress=False)
    assert onecycle.last_epoch == 2 * len(tr)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt)
    seen, real_step = [], plateau.step
    plateau.step = lambda metric: (seen.append(metric), real_step(metric))
    hist = train.fit(model, tr, opt, 2, val_data=va, scheduler=plateau, progress=False)
    assert seen == hist["val_loss"]  # ReduceLROnPlateau is fed the validation loss


def test_live_plot_draws(small, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    tr, va = small
    model = make()
    steps = []
    plot = train._live_plot()
    real_update = plot.update
    monkeypatch.setattr(plot, "update", lambda logs, current_step=None: steps.append(current_step)
                        or real_update(logs, current_step=current_step))
    monkeypatch.setattr(train, "_live_plot", lambda: plot)
    hist = train.fit(model, tr, torch.optim.Adam(model.parameters()), 2, val_data=va, live_plot=True,
                     progress=False)
    assert len(hist["val_loss"]) == 2
    assert steps == hist["epoch"] == [1, 2]  # the plot's epochs are fit's epochs, counted from 1


def test_predict_and_per_class_accuracy(small):
    tr, va = small
    model = make()
    train.fit(model, tr, torch.optim.Adam(model.parameters()), 1, progress=False)
    out, y = train.predict(model, va)
    assert out.shape == (1000, 10) and torch.equal(y, va.y)
    pca = train.per_class_accuracy(model, va, 10)
    for c in range(10):
        mask = y == c
        assert pca[c].item() == pytest.approx((out[mask].argmax(1) == c).float().mean().item())
    assert torch.isnan(train.per_class_accuracy(model, [(va.x[:5], torch.zeros(5, dtype=torch.long))], 10)[3])


def test_save_checkpoint_is_atomic(tmp_path, monkeypatch):
    model = make()
    path = train.save_checkpoint(tmp_path / "m.pt", model, note="first")
    before = path.read_bytes()

    def exploding_save(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", exploding_save)
    with pytest.raises(OSError, match="disk full"):
        train.save_checkpoint(path, make(1))
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["m.pt"]


def test_load_checkpoint_with_map_location(tmp_path):
    a, b = make(0), make(1)
    opt = torch.optim.Adam(a.parameters())
    a(torch.zeros(1, 784)).sum().backward()
    opt.step()
    train.save_checkpoint(tmp_path / "a.pt", a, opt, epoch=3)
    opt_b = torch.optim.Adam(b.parameters())
    state = train.load_checkpoint(tmp_path / "a.pt", b, opt_b, map_location="cpu")
    assert state["epoch"] == 3 and torch.equal(a[1].weight, b[1].weight)
    assert opt_b.state_dict()["state"][0]["step"] == 1


def test_bad_inputs_get_clear_errors(small):
    tr, va = small
    model = make()
    opt = torch.optim.SGD(model.parameters(), 0.1)
    with pytest.raises(ValueError, match="needs 10 outputs"):
        train.fit(mlp([784, 8, 5]), tr, torch.optim.SGD(mlp([784, 8, 5]).parameters(), 0.1), progress=False)
    with pytest.raises(RuntimeError, match="could not take a batch of shape"):
        train.fit(mlp([100, 10]), tr, opt, progress=False)
    with pytest.raises(ValueError, match="empty"):
        train.fit(model, [], opt, progress=False)
    with pytest.raises(ValueError, match="empty"):
        train.evaluate(model, [])
    with pytest.raises(TypeError, match="pair of tensors"):
        train.fit(model, [(va.x[:4], [0, 1, 2, 3])], opt, progress=False)
    with pytest.raises(ValueError, match="rows for a batch"):
        train.fit(nn.Sequential(nn.Flatten(0), nn.Linear(784 * 100, 10)), tr, opt, progress=False)
    with pytest.raises(ValueError, match="pass val_data"):
        train.fit(model, tr, opt, checkpoint="x.pt", progress=False)
    with pytest.raises(FloatingPointError, match="learning rate"):
        train.fit(model, tr, torch.optim.SGD(model.parameters(), lr=1e30), epochs=3, progress=False)
    with pytest.raises(ValueError, match="ReduceLROnPlateau steps on the validation loss"):
        train.fit(model, tr, opt, scheduler=torch.optim.lr_scheduler.ReduceLROnPlateau(opt), progress=False)


@pytest.mark.parametrize("dtype", [torch.float32, torch.int32])
def test_labels_of_the_wrong_dtype_get_one_line_before_any_step(small, dtype):
    tr, _ = small
    model = make()
    before = model[1].weight.detach().clone()
    steps = []
    bad = [(tr.x[:100], tr.y[:100].to(dtype))]
    expected = (rf"^The targets are {dtype} but a \[N, 10\] output needs class indices as int64 "
                r"\(torch.long\): convert the labels once with y.long\(\)")
    with pytest.raises(TypeError, match=expected):
        train.fit(model, bad, torch.optim.SGD(model.parameters(), 0.1), progress=False, on_step=steps.append)
    assert steps == [] and torch.equal(model[1].weight, before)
    with pytest.raises(TypeError, match="int64"):
        train.evaluate(model, bad)


def _read_only_folder(tmp_path: Path) -> Path:
    """A folder this process cannot write: chmod 555, or (as root, which ignores modes) sysfs."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    if os.geteuid() == 0:
        folder = Path("/sys")
    with pytest.raises(OSError):  # the premise, checked: this folder really refuses a new file
        (folder / "probe").write_bytes(b"")
    return folder


def test_an_unwritable_checkpoint_fails_before_the_first_epoch(small, tmp_path):
    tr, va = small
    model = make()
    path = _read_only_folder(tmp_path) / "best.pt"
    steps = []
    expected = rf"^checkpoint='{path}' cannot be written .*pass a path in a folder"
    with pytest.raises(ValueError, match=expected):
        train.fit(model, tr, torch.optim.SGD(model.parameters(), 0.1), epochs=2, val_data=va,
                  checkpoint=path, progress=False, on_step=steps.append)
    assert steps == []


def test_train_epoch_mirrors_evaluate(small):
    """With lr=0 the weights never move, so the training pass must report what evaluate reports."""
    tr, _ = small
    model = make()
    seen = []
    result = train.train_epoch(model, tr, torch.optim.SGD(model.parameters(), lr=0.0), on_step=seen.append,
                               step=7, progress=False)
    expected = train.evaluate(model, tr)
    assert result["loss"] == pytest.approx(expected["loss"], rel=1e-6)
    assert result["acc"] == pytest.approx(expected["acc"]) and result["step"] == 7 + len(tr)
    assert seen == list(range(8, 8 + len(tr)))
    assert model.training  # train_epoch leaves the model in train mode, as fit did
