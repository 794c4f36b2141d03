"""Record the optimized-HLO op list of every benchmark program, to prove a refactor changes none.

Usage:
  ``python -m benchmarks.hlo_ops --out FILE``: compile, with ``jax.jit`` and convtrans's default
  implementation, the forward and the forward+backward program of every benchmark shape (SHAPES
  and SWEEP in float32, BF16_SHAPES in bfloat16), each in channels_last and channels_first, and
  write a JSON dict ``"shape|dtype|data_format|program" -> op list``.
  ``python -m benchmarks.hlo_ops --compare BEFORE AFTER``: say per key whether the two op lists
  are the same, summarize what differs, and exit 1 if anything does.

An op list has one line per computation of the compiled module (``ENTRY`` or ``computation``) and
one per instruction in it, in printed order: the opcode (with a fusion's kind, or a custom-call's
target) and the output shape without layouts. Names, ids, metadata and operands are left out, so
two compilations of the same program give the same list. Inputs are abstract
(``jax.ShapeDtypeStruct``): nothing is allocated or run.
"""

from __future__ import annotations

import argparse
import collections
import difflib
import json
import re
import sys

import jax
import jax.numpy as jnp

import convtrans as ct
from benchmarks.run import BF16_SHAPES, SHAPES, SWEEP, Shape

DATA_FORMATS = ("channels_last", "channels_first")

_COMPUTATION = re.compile(r"^(ENTRY\s+)?%?[\w.\-]+\s*\(.*\{\s*$")
_INSTRUCTION = re.compile(r"^\s+(?:ROOT\s+)?%?[\w.\-]+ = (.*)$")
_LAYOUT = re.compile(r"\{[^{}]*\}")
_COMMENT = re.compile(r"/\*.*?\*/")


def _split_shape(rhs: str) -> tuple[str, str]:
    """``"f32[2,3]{1,0} add(...)"`` -> ``("f32[2,3]{1,0}", "add(...)")``; tuple shapes too."""
    if rhs.startswith("("):
        depth = 0
        for i, char in enumerate(rhs):
            depth += {"(": 1, ")": -1}.get(char, 0)
            if depth == 0:
                return rhs[: i + 1], rhs[i + 1 :].lstrip()
    shape, _, rest = rhs.partition(" ")
    return shape, rest


def _strip_layout(shape: str) -> str:
    shape = _COMMENT.sub("", shape)
    while _LAYOUT.search(shape):  # layouts may nest, e.g. {1,0:T(8,128)}
        shape = _LAYOUT.sub("", shape)
    return re.sub(r"\s+", " ", shape).strip()


def op_list(hlo_text: str) -> list[str]:
    """The canonical op list of a compiled module's text (see the module docstring)."""
    ops = []
    for line in hlo_text.splitlines():
        if _COMPUTATION.match(line):
            ops.append("ENTRY" if line.startswith("ENTRY") else "computation")
            continue
        match = _INSTRUCTION.match(line)
        if not match:
            continue
        shape, rest = _split_shape(match.group(1))
        opcode = rest.split("(", 1)[0]
        if opcode == "fusion":
            kind = re.search(r"kind=(\w+)", rest)
            custom = re.search(r'"fusion_config":\{"kind":"([^"]*)"', rest)
            opcode += f"({kind.group(1) if kind else '?'}{':' + custom.group(1) if custom else ''})"
        elif opcode == "custom-call":
            target = re.search(r'custom_call_target="([^"]*)"', rest)
            opcode += f"({target.group(1) if target else '?'})"
        ops.append(f"{opcode} {_strip_layout(shape)}")
    return ops


def _config(shape: Shape) -> ct.Conv1DTransposeConfig:
    config = shape.config
    return config() if callable(config) else config  # a method before the refactor, a property after


def programs(shape: Shape, dtype, data_format: str) -> dict[str, list[str]]:
    """Op lists of the forward and forward+backward programs of one shape, dtype and format."""
    config = _config(shape).replace(data_format=data_format)
    x_shape = (
        (shape.batch, shape.steps, shape.cin)
        if data_format == "channels_last"
        else (shape.batch, shape.cin, shape.steps)
    )
    x = jax.ShapeDtypeStruct(x_shape, dtype)
    params = {
        "kernel": jax.ShapeDtypeStruct((shape.k, config.filters // config.groups, shape.cin), dtype),
        "bias": jax.ShapeDtypeStruct((config.filters,), dtype),
    }

    def forward(params, x):
        return ct.conv1d_transpose(params, x, config)[0]

    def forward_backward(params, x, cotangent):
        # The output is returned too, as in benchmarks.run, so XLA keeps the forward pass.
        y, vjp = jax.vjp(forward, params, x)
        return y, vjp(cotangent)

    cotangent = jax.eval_shape(forward, params, x)
    compiled = {
        "forward": jax.jit(forward).lower(params, x).compile(),
        "forward+backward": jax.jit(forward_backward).lower(params, x, cotangent).compile(),
    }
    return {name: op_list(c.as_text()) for name, c in compiled.items()}


def record() -> dict[str, list[str]]:
    cases = [(s, jnp.float32) for s in SHAPES + SWEEP] + [(s, jnp.bfloat16) for s in BF16_SHAPES]
    result = {}
    for shape, dtype in cases:
        for data_format in DATA_FORMATS:
            for program, ops in programs(shape, dtype, data_format).items():
                key = f"{shape.name}|{jnp.dtype(dtype).name}|{data_format}|{program}"
                result[key] = ops
                print(f"{key}: {len(ops)} ops", flush=True)
    return result


def _opcode_counts(ops: list[str]) -> collections.Counter:
    return collections.Counter(op.split(" ", 1)[0] for op in ops)


def compare(before: dict[str, list[str]], after: dict[str, list[str]], context: int = 8) -> bool:
    """Print per key 'same' or what differs; True if every key is the same in both."""
    all_same = True
    for key in list(before) + [k for k in after if k not in before]:
        if key not in after or key not in before:
            print(f"{key}: only in {'BEFORE' if key in before else 'AFTER'}")
            all_same = False
            continue
        old, new = before[key], after[key]
        if old == new:
            print(f"{key}: same")
            continue
        all_same = False
        print(f"{key}: DIFFERENT ({len(old)} -> {len(new)} lines)")
        old_counts, new_counts = _opcode_counts(old), _opcode_counts(new)
        for opcode in sorted(set(old_counts) | set(new_counts)):
            if old_counts[opcode] != new_counts[opcode]:
                print(f"    {opcode}: {old_counts[opcode]} -> {new_counts[opcode]}")
        diff = [
            line for line in difflib.unified_diff(old, new, lineterm="", n=1) if not line.startswith(("---", "+++"))
        ]
        for line in diff[:context]:
            print(f"    {line}")
        if len(diff) > context:
            print(f"    ... ({len(diff) - context} more diff lines)")
    return all_same


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--out", help="write the op lists of every program to this JSON file")
    group.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"), help="compare two such files")
    args = parser.parse_args(argv)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(record(), f, indent=1)
        return 0
    with open(args.compare[0]) as f, open(args.compare[1]) as g:
        return 0 if compare(json.load(f), json.load(g)) else 1


if __name__ == "__main__":
    sys.exit(main())
