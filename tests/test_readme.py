"""The README's usage example runs as written, and its output-length table is the library's."""

import pathlib
import re

import convtrans as ct

README = (pathlib.Path(__file__).parent.parent / "README.md").read_text()


def test_readme_opens_with_pip_install_then_the_two_setup_commands():
    blocks = [block.split("```", 1)[0] for block in README.split("```bash")[1:]]
    assert "pip install ." in blocks[0] and "pip install dist/convtrans-" in blocks[0]
    assert "make demo" in blocks[1] and "make test" in blocks[1]


def test_usage_example_runs_as_written():
    usage = README.split("## Usage", 1)[1]
    code = usage.split("```python", 1)[1].split("```", 1)[0]
    exec(compile(code, "README.md (usage)", "exec"), {})


def test_output_length_table_rows_match_output_length():
    rows = re.findall(r"^\| `(\"valid\"|\"same\")` \| (None|op) \| `(.+?)` \|$", README, re.M)
    assert len(rows) == 4
    for padding, op, formula in rows:
        for n, k, s, d, op_value in [(10, 5, 3, 1, 2), (7, 4, 4, 1, 1), (3, 3, 1, 2, 0), (1, 2, 1, 1, 0)]:
            config = ct.Conv1DTransposeConfig(
                2,
                k,
                strides=s,
                dilation_rate=d,
                padding=padding.strip('"'),
                output_padding=None if op == "None" else op_value,
            )
            ke = (k - 1) * d + 1
            expected = eval(formula, {"n": n, "s": s, "ke": ke, "op": op_value, "max": max})
            assert ct.output_length(config, n) == expected, (padding, op, formula)


def test_pytorch_padding_row_matches_output_length():
    (formula,) = re.findall(r"^\| `p` or `\(pl, pr\)` \(PyTorch\) \| op \(None = 0\) \| `(.+?)` \|$", README, re.M)
    for n, k, s, d, pl, pr, op in [
        (10, 5, 3, 1, 2, 1, 2),
        (4, 3, 2, 3, 0, 4, None),
        (1, 4, 1, 1, 2, 2, 0),
        (6, 2, 5, 1, 1, 1, 4),
    ]:
        config = ct.Conv1DTransposeConfig(2, k, strides=s, dilation_rate=d, padding=(pl, pr), output_padding=op)
        expected = eval(formula, {"n": n, "s": s, "ke": (k - 1) * d + 1, "pl": pl, "pr": pr, "op": op or 0})
        assert ct.output_length(config, n) == expected, (n, k, s, d, pl, pr, op)


def test_readme_is_a_guide_of_at_most_15_kib_without_issue_references():
    path = pathlib.Path(__file__).parent.parent / "README.md"
    assert path.stat().st_size <= 15360, "README.md is the user guide; design and measurements go under docs/"
    assert not re.findall(r"\bissues?\s*#?\d+", README, re.I)


def test_what_runs_example_runs_and_prints_the_plans_it_shows():
    section = README.split("## What runs for a layer", 1)[1]
    code = section.split("```python", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(compile(code, "README.md (what runs)", "exec"), namespace)
    shown = re.findall(r"^# (Plan\(.*\))$", code, re.M)
    assert repr(namespace["ct"].plan(namespace["config"], (4, 64, 512), platform="cpu")) == shown[0]
    assert repr(namespace["ct"].plan(namespace["config"], (4, 64, 512), platform="cuda")) == shown[1]
