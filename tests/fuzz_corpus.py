"""Inputs for the fuzz run: mutated programs and malformed case files, from a seeded generator.

Our own generator rather than hypothesis: the inputs are domain mutations (AST and text edits of
the bundled programs, a list of known sandbox escapes, stress programs, edits of the bundled case
files), every one is written to a file and run through the real loader and engine inside a child
process that carries an audit hook, and a failure must name its seed and index so that one line
reproduces it. hypothesis' shrinking cannot cross that process boundary, and its health checks
and example database would add time and state to every CI run for no extra reach.
"""

from __future__ import annotations

import ast
import random
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ESCAPES", "STRESS", "Input", "case_files", "programs", "seed_cases"]

ROOT = Path(__file__).resolve().parent.parent

# Known ways out of a restricted Python: each must be refused by the program checker.
ESCAPES = [
    "__import__('os').system('touch {marker}')",
    "().__class__.__bases__[0].__subclasses__()",
    "x.__class__.__init__.__globals__",
    "eval('1')",
    "exec('import os')",
    "open('{marker}', 'w')",
    "globals()",
    "locals()",
    "vars()",
    "getattr(x, 'T')",
    "compile('1', '', 'eval')",
    "breakpoint()",
    "print(1)",
    "type(x)",
    "(lambda: 1)()",
    "[c for c in x]",
    "{{1: 2}}",
    "{{x}}",
    "f'{{x}}'",
    "b'x'",
    "x.T.__class__",
    "x if x else x",
    "x.T.T.flat",
    "x @ __builtins__",
    "__builtins__['eval']",
    "x.__dict__",
    "...",
    "None",
    "True",
    "'string'",
    "1j",
    "exp(x)(1)",
    "exp.__call__(x)",
    "sum(*x)",
    "sum(**x)",
    "sum(x, axis=__import__('os'))",
    "reshape(x, shape(__import__('os')))",
    "where(x.__class__ > 0, x, x)",
    "x[__import__('os')]",
    "x[::__import__('os').getpid()]",
    "(yield x)",
    "(await x)",
    "x.mro()",
    "_x",
    "__name__",
    "__loader__.load_module('os')",
    "[*x]",
    "not x",
    "x and x",
    "x < x",
    "x is x",
    "x in x",
    "~x",
    "x << 1",
    "x % 2",
    "x // x",
    "exp(x=1)",
    "sum(x, axis=x)",
    "sum(x, keepdims=x)",
    "one_hot(x, x)",
    "arange(x)",
]
ESCAPE_STATEMENTS = [
    "import os",
    "from os import system",
    "del x",
    "global x",
    "assert x",
    "with x: pass",
    "try:\n    pass\nexcept Exception:\n    pass",
    "class A: pass",
    "def f(): pass",
    "x: int = 1",
    "a, b = 1, 2",
    "a = b = 1",
    "*a, = x",
    "x[0] = 1",
    "x.y = 1",
    "raise x",
    "while True: pass",
    "for i in x: pass",
    "if x: pass",
    "x",
    "pass",
    "a += 1",
    "x **= 2",
    "lambda: 0",
    "@exp\ndef g(): pass",
    "match x:\n    case _: pass",
    "async def f(): pass",
    "nonlocal x",
    "return x",
    "break",
]

# Programs that once hung, overflowed, recursed or asked for huge memory.
STRESS = [
    "10 ** 10 ** 10",
    "9 ** 9 ** 9",
    "2 ** 2 ** 100",
    "10.0 ** 400",
    "sum(x, axis=2 ** 63)",
    "sum(x, axis=9223372036854775808)",
    "sum(x, axis=4503599627370496 * 4503599627370496)",
    "reshape(x, (1048576, 1048576))",
    "one_hot(arange(3), 1000000000)",
    "arange(1000000000000)",
    "reshape(x, (-1, 99999999999999999999))",
    "x ** 1e308",
    "x ** 5000",
    "exp(exp(exp(exp(x))))",
    "log(0 * x)",
    "x / 0",
    "1 / 0",
    "1 // 0",
    "(" * 150 + "x" + ")" * 150,
    "-" * 5000 + "x",
    "exp(" * 300 + "x" + ")" * 300,
    " + ".join(["x"] * 2000),
    "concat(" + ", ".join(["x"] * 16) + ")",
    "x" + "[0]" * 200,
    "1" + "0" * 5000,
    "reshape(x, (size(x, 0) * 1000000, 1000000))",
    "transpose(x, (0, 1, 2, 3, 4, 5, 6, 7))",
    "x[1000000000000]",
    "sum(x, axis=(0, 0, 0))",
    "where(x > 0, x, 10 ** 10 ** 10)",
]

SCALAR_NAMES = ["x"]


@dataclass(frozen=True)
class Input:
    kind: str  # "program" or "file"
    index: int
    how: str  # which mutation made it
    text: str  # the case file's text (or bytes as latin-1 for binary garbage)
    binary: bool = False


def seed_cases() -> list[tuple[Path, str, dict]]:
    """The bundled case files with program forwards: (path, text, parsed)."""
    found = []
    for path in sorted([*ROOT.joinpath("cases").rglob("*.toml"), *ROOT.joinpath("examples", "cases").glob("*.toml")]):
        text = path.read_text()
        data = tomllib.loads(text)
        found.append((path, text, data))
    return found


def _program_of(data: dict, section: str) -> str | None:
    value = data.get(section)
    if isinstance(value, dict) and isinstance(value.get("program"), str):
        return str(value["program"])
    return None


class _Exprs(ast.NodeVisitor):
    def __init__(self) -> None:
        self.found: list[ast.expr] = []

    def generic_visit(self, node: ast.AST) -> None:
        if isinstance(node, ast.expr):
            self.found.append(node)
        super().generic_visit(node)


def _replace_expr(program: str, rng: random.Random, pool: list[str]) -> str:
    """Replace one expression of ``program`` by one from ``pool`` (an AST mutation)."""
    try:
        tree = ast.parse(program)
    except SyntaxError:
        return program
    finder = _Exprs()
    finder.visit(tree)
    if not finder.found:
        return program
    target = rng.choice(finder.found)
    try:
        replacement = ast.parse(rng.choice(pool), mode="eval").body
    except (SyntaxError, RecursionError, MemoryError, ValueError):
        return program

    class Swap(ast.NodeTransformer):
        def visit(self, node: ast.AST) -> ast.AST:
            if node is target:
                return replacement
            return super().visit(node)

    try:
        return ast.unparse(ast.fix_missing_locations(Swap().visit(tree)))
    except (RecursionError, ValueError, AttributeError):
        return program


_TOKENS = [
    "(",
    ")",
    "**",
    ".",
    "[",
    "]",
    "_",
    "__",
    ":",
    ";",
    "\n",
    "\x00",
    "'",
    '"',
    "9" * 30,
    "e308",
    "j",
    ",",
    "=",
    "+=",
    "@",
    "\\",
    "#",
    "\t",
    " " * 50,
    "λ",
    "\u2028",
]


def _text_edit(program: str, rng: random.Random) -> str:
    lines = program.splitlines() or [""]
    op = rng.randrange(6)
    i = rng.randrange(len(lines))
    if op == 0:
        del lines[i]
    elif op == 1:
        lines.insert(i, lines[i])
    elif op == 2 and len(lines) > 1:
        j = rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
    elif op == 3:
        line = lines[i]
        k = rng.randrange(len(line) + 1)
        lines[i] = line[:k] + rng.choice(_TOKENS) + line[k:]
    elif op == 4:
        line = lines[i]
        if line:
            k = rng.randrange(len(line))
            lines[i] = line[:k] + line[k + 1 :]
    else:
        text = "\n".join(lines)
        return text[: rng.randrange(len(text) + 1)]
    return "\n".join(lines)


def _names(program: str) -> list[str]:
    try:
        tree = ast.parse(program)
    except SyntaxError:
        return ["x"]
    return sorted({n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}) or ["x"]


def _mutate_program(program: str, rng: random.Random, marker: str) -> tuple[str, str]:
    names = _names(program)
    roll = rng.random()
    if roll < 0.3:
        pool = [e.format(marker=marker).replace("x", rng.choice(names)) for e in ESCAPES]
        return _replace_expr(program, rng, pool), "ast-escape"
    if roll < 0.5:
        pool = [s.replace("x", rng.choice(names)) for s in STRESS]
        return _replace_expr(program, rng, pool), "ast-stress"
    if roll < 0.65:
        target = rng.choice(names)
        stmt = rng.choice(ESCAPE_STATEMENTS + [f"{target} = {s}" for s in STRESS]).replace("x", target)
        lines = program.splitlines()
        lines.insert(rng.randrange(len(lines) + 1), stmt)
        return "\n".join(lines), "statement"
    if roll < 0.85:
        out = program
        for _ in range(rng.randrange(1, 4)):
            out = _text_edit(out, rng)
        return out, "text"
    # a valid-looking program made from the bundled one's own expressions, reshuffled
    pool = [ast.unparse(e) for e in _all_exprs(program)] or ["x"]
    out = program
    for _ in range(rng.randrange(1, 4)):
        out = _replace_expr(out, rng, pool)
    return out, "ast-shuffle"


def _all_exprs(program: str) -> list[ast.expr]:
    try:
        tree = ast.parse(program)
    except SyntaxError:
        return []
    finder = _Exprs()
    finder.visit(tree)
    return finder.found


def _with_program(text: str, data: dict, section: str, program: str) -> str:
    old = _program_of(data, section)
    assert old is not None
    quoted = program.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    body = f'"""\n{quoted}\n"""'
    start = text.index(old) if old in text else -1
    if start < 0:
        return text
    # the program sits between triple quotes; replace the quoted block including them
    before = text.rfind('"""', 0, start)
    after = text.find('"""', start + len(old))
    if before < 0 or after < 0:
        return text
    return text[:before] + body + text[after + 3 :]


def programs(seed: int, count: int, marker: str) -> Iterator[Input]:
    """``count`` case files, each a bundled case with a mutated forward, backward or reference."""
    rng = random.Random(seed)
    seeds = [(p, t, d) for p, t, d in seed_cases() if _program_of(d, "forward")]
    for index in range(count):
        _, text, data = rng.choice(seeds)
        sections = [s for s in ("forward", "backward", "reference") if _program_of(data, s)]
        section = rng.choice(sections)
        program, how = _mutate_program(_program_of(data, section) or "", rng, marker)
        yield Input("program", index, f"{how}:{section}", _with_program(text, data, section, program))


_VALUES = [
    "1979-05-27",
    "1979-05-27T07:32:00Z",
    "07:32:00",
    "true",
    "false",
    "-7",
    "0",
    "9223372036854775807",
    "-9223372036854775808",
    "1e308",
    "inf",
    "nan",
    "-inf",
    '"::error title=x::owned"',
    '"\\n::error title=x::owned"',
    '"\\u0000\\u0007"',
    '"##[error]owned"',
    "[]",
    "{}",
    "[[]]",
    '["a", 1]',
    "[1, [2]]",
    "[" * 500 + "]" * 500,
    "[" * 5000 + "]" * 5000,
    '{ random = "normal", shape = [100000, 100000] }',
    '{ random = "normal", shape = [3], seed = true }',
    '{ random = "normal", shape = [true] }',
    '{ random = "normal", shape = [3], seed = -1 }',
    '{ random = "normal", shape = [3], seed = 18446744073709551616 }',
    '{ random = "integers", low = 0, high = 9223372036854775807, shape = [3] }',
    '{ random = "uniform", low = nan, high = inf }',
    '{ random = "normal", std = -1 }',
    '{ random = "other" }',
    '{ value = "x", decimals = true }',
    '"x"',
    "'''multi\nline'''",
    '"' + "a" * 10000 + '"',
    "1" * 400,
]

_SECTIONS = [
    '[forward]\ncallable = "os:system"\nargs = []\nkwargs = {{ command = "touch {marker}" }}',
    '[forward]\ncallable = "subprocess:run"\nargs = []\nkwargs = {{ args = ["touch", "{marker}"] }}',
    '[forward]\ncallable = "runpy:run_path"\nargs = []\nkwargs = {{ path_name = "{marker}" }}',
    "[forward]\ncallable = \"builtins:exec\"\nargs = []\nkwargs = {{ source = \"open('{marker}', 'w')\" }}",
    '[forward]\ncallable = "importlib:import_module"\nargs = []\nkwargs = {{ name = "antigravity" }}',
    '[forward]\ncallable = "shutil:rmtree"\nargs = []\nkwargs = {{ path = "{marker}" }}',
    '[forward]\ncallable = "pickle:loads"\nargs = []\nkwargs = {{ data = "x" }}',
    '[forward]\ncallable = "ctypes:CDLL"\nargs = []\nkwargs = {{ name = "libc.so.6" }}',
    '[forward]\ncallable = "pathlib:Path.touch"\nargs = []',
    '[forward]\ncallable = "torch.nn.functional:torch.load"\nargs = []\nkwargs = {{ f = "{marker}" }}',
    '[forward]\ncallable = "torch.nn.functional.importlib.import_module"\nargs = []',
    '[forward]\ncallable = "torch.nn.functional:np.save"\nargs = []\nkwargs = {{ file = "{marker}", arr = 1 }}',
    '[forward]\ncallable = "gradcheck_suite._cli:main"\nargs = []',
    '[forward]\ncallable = "gradcheck_suite.naive_layers:np.save"\nargs = []\n'
    'kwargs = {{ file = "{marker}", arr = 1 }}',
    '[forward]\ncallable = "torch.nn.functional.DType"\nargs = []',
    '[forward]\ncallable = "os.system"\nargs = []\nkwargs = {{ command = "touch {marker}" }}',
    '[forward]\ncallable = "torch.nn.functional.relu"\nargs = ["x"]',
    '[forward]\ncallable = "torch.nn.functional.conv2d"',
    "[sweep]\nsamples = 1000000000",
    "[sweep]\nsamples = true",
    "[sweep]\ndomain = {{ x = [nan, inf] }}",
    "[expect]\nf = 1979-05-27",
    '["\\n::error title=x::owned"]\nx = 1',
    "[" + " " * 4000 + '"inputs"]\nz = 1.0',
    "[constants]\nN = 99999999999999999999\nM = 9007199254740993",
    "[constants]\np = {{ stride = 1979-05-27 }}",
    "[upstream]\nq = 1",
]


def _edit_case(text: str, rng: random.Random, marker: str) -> tuple[str, str]:
    lines = text.splitlines()
    roll = rng.random()
    if roll < 0.35:
        # a value replaced
        keyed = [i for i, line in enumerate(lines) if "=" in line and not line.lstrip().startswith("#")]
        if keyed:
            i = rng.choice(keyed)
            key = lines[i].split("=", 1)[0]
            lines[i] = f"{key}= {rng.choice(_VALUES)}"
        return "\n".join(lines) + "\n", "value"
    if roll < 0.55:
        section = rng.choice(_SECTIONS).format(marker=marker)
        return text + "\n" + section + "\n", "section"
    if roll < 0.7:
        for _ in range(rng.randrange(1, 4)):
            if lines:
                del lines[rng.randrange(len(lines))]
        return "\n".join(lines) + "\n", "delete"
    if roll < 0.8:
        k = rng.randrange(len(text) + 1)
        return text[:k], "truncate"
    if roll < 0.9:
        k = rng.randrange(len(text) + 1)
        return text[:k] + rng.choice(_TOKENS + ["[[", "]]", '"""', "= =", "\ufeff"]) + text[k:], "token"
    # a whole section replaced by a dangerous one
    return _replace_forward(text, rng.choice(_SECTIONS[:16]).format(marker=marker)), "swap-forward"


def _replace_forward(text: str, section: str) -> str:
    start = text.find("[forward]")
    if start < 0:
        return text + "\n" + section + "\n"
    end = text.find("\n[", start + 1)
    return text[:start] + section + "\n" + (text[end:] if end >= 0 else "")


def case_files(seed: int, count: int, marker: str) -> Iterator[Input]:
    """``count`` malformed case files: edits of the bundled ones, and some binary garbage."""
    rng = random.Random(seed ^ 0x5EED)
    seeds = seed_cases()
    for index in range(count):
        _, text, _ = rng.choice(seeds)
        if rng.random() < 0.03:
            garbage = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400)))
            yield Input("file", index, "bytes", garbage.decode("latin-1"), binary=True)
            continue
        out, how = text, []
        for _ in range(rng.randrange(1, 3)):
            out, step = _edit_case(out, rng, marker)
            how.append(step)
        yield Input("file", index, "+".join(how), out)
