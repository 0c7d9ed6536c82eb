"""course_utils.init: every from-scratch initializer against torch.nn.init.

Three kinds of checks: the same numbers as torch given the same generator; the
distribution the formula promises (bound, std, orthogonality) on a large matrix;
and the point of it all, the signal's scale through a deep stack on real images.
"""

import math

import pytest
import torch
from torch import nn
from torch.nn import init as torch_init

from course_utils import init
from course_utils.data import STATS, to_float

SHAPES = [(64, 32), (32, 64), (40, 40), (16, 8, 3, 3), (6, 4, 5)]


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("shape", SHAPES)
def test_fans_match_torch(shape):
    assert init.fans(torch.empty(shape)) == torch_init._calculate_fan_in_and_fan_out(torch.empty(shape))


@pytest.mark.parametrize("name", sorted(init.GAINS))
def test_gain_matches_torch(name):
    assert init.calculate_gain(name) == pytest.approx(torch_init.calculate_gain(name))


@pytest.mark.parametrize("slope", [0.0, 0.01, 0.2, 1.0])
def test_leaky_relu_gain_matches_torch(slope):
    assert init.calculate_gain("leaky_relu", slope) == pytest.approx(
        torch_init.calculate_gain("leaky_relu", slope))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", ["xavier_uniform_", "xavier_normal_", "orthogonal_"])
def test_same_numbers_as_torch(name, shape):
    for gain in (1.0, 5 / 3):
        mine = getattr(init, name)(torch.empty(shape), gain=gain, generator=gen(1))
        ref = getattr(torch_init, name)(torch.empty(shape), gain=gain, generator=gen(1))
        torch.testing.assert_close(mine, ref, rtol=0, atol=0)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", ["normal", "uniform"])
@pytest.mark.parametrize("mode", ["fan_in", "fan_out"])
@pytest.mark.parametrize("nonlinearity,slope", [("relu", 0.0), ("leaky_relu", 0.2), ("tanh", 0.0)])
def test_kaiming_same_numbers_as_torch(shape, kind, mode, nonlinearity, slope):
    mine = getattr(init, f"kaiming_{kind}_")(torch.empty(shape), mode=mode, nonlinearity=nonlinearity,
                                                negative_slope=slope, generator=gen(2))
    ref = getattr(torch_init, f"kaiming_{kind}_")(torch.empty(shape), a=slope, mode=mode,
                                                 nonlinearity=nonlinearity, generator=gen(2))
    torch.testing.assert_close(mine, ref, rtol=1e-6, atol=0)


# Statistical checks on 512 x 256 = 131,072 draws. The relative standard error of a sample
# std is about sqrt((kurtosis - 1) / (4 N)) < 0.2%, so a 2% tolerance is over 10 standard
# errors: it cannot fail by chance, but a wrong constant (e.g. sqrt(3) vs sqrt(6)) fails.
N_OUT, N_IN, TOL = 512, 256, 0.02


def test_xavier_uniform_bound_and_std():
    w = init.xavier_uniform_(torch.empty(N_OUT, N_IN), generator=gen())
    bound = math.sqrt(6 / (N_IN + N_OUT))  # not sqrt(6) / (N_IN + N_OUT)
    assert w.abs().max() <= bound
    assert w.abs().max() > 0.999 * bound
    assert w.std().item() == pytest.approx(math.sqrt(2 / (N_IN + N_OUT)), rel=TOL)
    assert abs(w.mean().item()) < 0.01 * bound


@pytest.mark.parametrize("fn,expected_std", [
    (lambda w: init.xavier_normal_(w, gain=2.0, generator=gen()), 2 * math.sqrt(2 / (N_IN + N_OUT))),
    (lambda w: init.kaiming_normal_(w, generator=gen()), math.sqrt(2 / N_IN)),
    (lambda w: init.kaiming_uniform_(w, generator=gen()), math.sqrt(2 / N_IN)),
    (lambda w: init.kaiming_normal_(w, mode="fan_out", generator=gen()), math.sqrt(2 / N_OUT)),
])
def test_std_matches_formula_and_torch(fn, expected_std):
    w = fn(torch.empty(N_OUT, N_IN))
    assert w.std().item() == pytest.approx(expected_std, rel=TOL)
    assert abs(w.mean().item()) < 0.01 * expected_std


def test_normal_moments_match_torch():
    """Same distribution as torch drawn from a *different* seed: mean, std and kurtosis."""
    mine = init.kaiming_normal_(torch.empty(N_OUT, N_IN), generator=gen(3))
    ref = torch_init.kaiming_normal_(torch.empty(N_OUT, N_IN), nonlinearity="relu", generator=gen(4))

    def kurtosis(t):
        z = (t - t.mean()) / t.std()
        return (z**4).mean().item()

    assert mine.std().item() == pytest.approx(ref.std().item(), rel=TOL)
    assert kurtosis(mine) == pytest.approx(3.0, abs=0.1)  # a Gaussian, not a uniform (1.8)
    assert kurtosis(ref) == pytest.approx(kurtosis(mine), abs=0.1)


@pytest.mark.parametrize("shape", [(64, 32), (32, 64), (40, 40), (16, 8, 3, 3)])
def test_orthogonal_is_orthogonal(shape):
    gain = 1.5
    w = init.orthogonal_(torch.empty(shape), gain=gain, generator=gen()).reshape(shape[0], -1)
    rows, cols = w.shape
    gram = w @ w.T if rows <= cols else w.T @ w  # the smaller side is orthonormal
    torch.testing.assert_close(gram, gain**2 * torch.eye(min(rows, cols)), rtol=0, atol=1e-5)


def test_orthogonal_is_not_biased_by_qr_signs():
    """QR alone gives a Q that follows LAPACK's sign convention: for 8x8 Gaussian matrices the
    diagonal of Q then averages about -0.2. With the sign fix it averages 0, as for a uniformly
    random orthogonal matrix (standard error here 0.006)."""
    diag = torch.stack([torch.diagonal(init.orthogonal_(torch.empty(8, 8), generator=gen(s)))
                        for s in range(400)])
    assert diag.mean().abs().item() < 0.05


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        init.xavier_uniform_(torch.empty(10))
    with pytest.raises(ValueError, match="fan_in"):
        init.kaiming_normal_(torch.empty(3, 3), mode="fan")
    with pytest.raises(ValueError, match="Unknown nonlinearity"):
        init.calculate_gain("swish")


def _second_moments(images, init_fn, activation, depth=30, width=256):
    """E[h^2] after each layer of a deep bias-free stack fed real Fashion-MNIST images."""
    torch.manual_seed(0)
    h, out = images, []
    n_in = images.shape[1]
    with torch.no_grad():
        for _ in range(depth):
            w = init_fn(torch.empty(width, n_in))
            h = activation(h @ w.T)
            out.append((h**2).mean().item())
            n_in = width
    return out


@pytest.fixture
def images(fashion):
    x, _ = fashion
    mean, std = STATS["fashion-mnist"]
    return to_float(x[:1000], mean, std).flatten(1)


def test_he_keeps_relu_signal_and_xavier_halves_it(images):
    he = _second_moments(images, lambda w: init.kaiming_normal_(w), torch.relu)
    xavier = _second_moments(images, lambda w: init.xavier_normal_(w), torch.relu)
    # He: the second moment stays within a factor 2 of layer 1 over 30 layers.
    assert 0.5 < he[-1] / he[0] < 2
    # Xavier (gain 1) with ReLU: each square layer halves it: about 2^-29 after 30 layers.
    assert xavier[-1] / xavier[0] < 1e-6


def test_xavier_keeps_linear_signal_and_default_shrinks_it(images):
    xavier = _second_moments(images, lambda w: init.xavier_normal_(w), lambda h: h)
    default = _second_moments(images, lambda w: nn.init.kaiming_uniform_(w, a=math.sqrt(5)), lambda h: h)
    assert 0.5 < xavier[-1] / xavier[1] < 2  # layer 1 maps 784 -> 256; square from then on
    # nn.Linear's default is U(-1/sqrt(n_in), 1/sqrt(n_in)): Var(w) = 1/(3 n_in), a third per layer.
    per_layer = (default[-1] / default[1]) ** (1 / 28)  # geometric mean over 28 square layers
    assert per_layer == pytest.approx(1 / 3, rel=0.05)


def test_shrink_last_layer_scales_only_the_last_linear_in_place():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 5), nn.ReLU(),
                        nn.Linear(5, 3))
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    params = list(net.parameters())
    last = init.shrink_last_layer_(net, factor=0.25)
    assert last is net[5]
    assert all(a is b for a, b in zip(params, net.parameters()))  # in place: an optimizer still sees them
    torch.testing.assert_close(net[5].weight, 0.25 * before["5.weight"])
    assert torch.equal(net[5].bias, torch.zeros(3))
    for name in ["1.weight", "1.bias", "3.weight", "3.bias"]:
        assert torch.equal(dict(net.named_parameters())[name], before[name])
    with pytest.raises(ValueError, match="factor"):
        init.shrink_last_layer_(net, factor=0.0)
    with pytest.raises(ValueError, match="no nn.Linear"):
        init.shrink_last_layer_(nn.Sequential(nn.ReLU()))


def test_shrink_last_layer_brings_the_initial_loss_to_ln_10(fashion):
    """A deep ReLU net with a large last layer starts far above ln 10 on real images; shrunk, at it."""
    images, labels = fashion
    x = to_float(images[:1000], *STATS["fashion-mnist"]).flatten(1)
    torch.manual_seed(0)
    net = nn.Sequential(*[m for k in range(6) for m in (nn.Linear(784 if k == 0 else 64, 64), nn.ReLU())],
                        nn.Linear(64, 10))
    for m in net:
        if isinstance(m, nn.Linear):
            torch_init.kaiming_normal_(m.weight)
            torch_init.zeros_(m.bias)
    with torch.no_grad():
        net[-1].weight.mul_(3.0)  # over-confident: large logits
        before = nn.functional.cross_entropy(net(x), labels[:1000]).item()
        init.shrink_last_layer_(net, factor=0.1)
        after = nn.functional.cross_entropy(net(x), labels[:1000]).item()
    assert before > math.log(10) + 1.0
    assert after == pytest.approx(math.log(10), abs=0.03)
