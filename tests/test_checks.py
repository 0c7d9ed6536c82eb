import pytest
import torch

from course_utils.checks import check_close, check_true, needs, show_source


def test_check_close_passes_and_prints(capsys):
    check_close(torch.ones(3), torch.ones(3), name="ones")
    assert "✓ ones matches" in capsys.readouterr().out


def test_check_close_explains_differences():
    expected = r"in 1 of 2 elements; the largest difference, about 1e\+00, is at index \(1,\)\. Hint: look"
    with pytest.raises(AssertionError, match=expected):
        check_close(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.5]), hint="look at eps")
    with pytest.raises(AssertionError, match=r"shape \(2,\), expected \(3,\)"):
        check_close(torch.zeros(2), torch.zeros(3))
    with pytest.raises(AssertionError, match=r"at index \(1, 0\)"):
        check_close(torch.zeros(2, 2), torch.tensor([[0.0, 0.0], [3.0, 0.0]]))


def test_check_close_never_states_the_expected_value():
    for actual, expected in [(24, 25), (torch.tensor(0.123), torch.tensor(0.789)),
                             (torch.tensor([7.0, 1.0]), torch.tensor([7.0, 4321.0]))]:
        with pytest.raises(AssertionError) as info:
            check_close(actual, expected, name="count")
        message = str(info.value)
        assert "count differs from the reference" in message
        if torch.as_tensor(actual).numel() == 1:
            assert message.startswith("count differs from the reference (yours is smaller).")
        for number in ("25", "0.789", "0.666", "4321", "4.32e+03", "4320"):
            assert number not in message, f"the answer leaks: {message}"


def test_check_close_explains_a_missing_return_or_a_wrong_type():
    with pytest.raises(AssertionError, match=r"result is None: does your function end with a `return`\?"):
        check_close(None, torch.ones(2), name="result")
    with pytest.raises(AssertionError, match="result is a str"):
        check_close("abc", torch.ones(2), name="result")


def test_check_close_flags_nan():
    with pytest.raises(AssertionError, match="in 1 of 2 elements; the largest difference, infinite or NaN"):
        check_close(torch.tensor([1.0, float("nan")]), torch.tensor([1.0, 2.0]))
    with pytest.raises(AssertionError, match="about 1e-03"):
        check_close(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0012]))
    check_close(torch.tensor([float("nan")]), torch.tensor([float("nan")]))  # NaN where expected is fine


def test_check_true(capsys):
    check_true(True, "accuracy above chance")
    assert "✓ accuracy above chance" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="Not yet: loss went down. Hint: lr"):
        check_true(False, "loss went down", hint="lr")


def test_needs_names_what_to_run_first():
    model_hard = 1  # noqa: F841  (needs reads the caller's globals, not its locals)
    globals()["defined_here"] = 1
    try:
        needs("defined_here", first="run task 1")  # defined: nothing happens
        with pytest.raises(NameError, match=r"^model_hard, baseline not defined yet: run task 2 first\.$"):
            needs("defined_here", "model_hard", "baseline", first="run task 2 first")
    finally:
        del globals()["defined_here"]


def test_show_source(capsys):
    show_source(check_true)
    assert "def check_true" in capsys.readouterr().out
