#!/usr/bin/env python
"""Mutation fuzzer for the profile loader: every mutated profile must load or be rejected with ProfileError.

Starts from the shipped profiles (``profiles/*.json``) and mutates them in two ways:

- as parsed data, handed to ``Profile.from_dict`` (type changes, deletions, reorderings, huge, integral-float and
  non-finite numbers, deep nesting, renamed and added keys, swapped segments, values no JSON has);
- as JSON text written to a file and read with ``load_profile`` (the same, plus broken text: truncation, stray
  characters, duplicated keys, ``NaN``/``Infinity`` tokens, 5,000-digit integers, very deep nesting, invalid
  UTF-8, byte-order marks).

A profile that loads must also round-trip (``from_dict(to_dict())`` equal, JSON-serialisable without NaN) and
hold a Python int wherever the schema says integer; a rejection must list its problems as non-empty lines.
Anything else is an escape. Case ``i`` of seed ``s`` is the same whatever ``--count`` is, so ``--case i``
replays one. Exit status: 0 when nothing escaped, 1 otherwise.

    python scripts/fuzz_profiles.py --seed 0 --count 10000
"""

from __future__ import annotations

import argparse
import collections
import copy
import json
import math
import random
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from flowblending.errors import ProfileError  # noqa: E402
from flowblending.profile import Profile, load_profile, profile_schema, validate_profile_dict  # noqa: E402

Path_ = tuple[str | int, ...]

#: Values a field may be changed to (each of another type than most fields expect, or a boundary value).
PLAIN_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1,
    2,
    50,
    0.5,
    -0.5,
    1.0,
    50.0,
    "",
    "x",
    "50",
    "large",
    [],
    {},
    [1],
    {"a": 1},
    [None],
]
NUMBERS: list[Any] = [
    0,
    -0.0,
    1e-300,
    1e308,
    -1e308,
    1.7976931348623157e308,
    2**53 + 1,
    2**63,
    -(2**63),
    10**30,
    10**308,
    10**400,
    1e20,
    float("inf"),
    float("-inf"),
    float("nan"),
    True,
    False,
]
#: Values only a Python caller can pass (no JSON text spells them).
PYTHON_ONLY: list[Callable[[], Any]] = [
    lambda: (1, 2),
    lambda: {1, 2},
    lambda: 1j,
    lambda: Decimal("1.5"),
    lambda: b"bytes",
    lambda: object(),
    lambda: 10**5000,
    lambda: "\ud800lone",
    lambda: {1: "int key"},
    lambda: {("a",): "tuple key"},
    lambda: range(3),
]
KEY_VARIANTS: list[Callable[[str], str]] = [
    lambda k: k.upper(),
    lambda k: k + "_",
    lambda k: k[:-1],
    lambda k: " " + k,
    lambda k: "",
    lambda k: k.replace("_", "-"),
    lambda k: k + "\u00e9",
    lambda k: k + "\ud800",
    lambda k: "$ref",
]


# --- the shipped profiles ---------------------------------------------------------------------------------
def shipped() -> list[dict]:
    files = sorted((ROOT / "profiles").glob("*.json"))
    if not files:
        raise SystemExit(f"no profiles in {ROOT / 'profiles'}")
    return [json.loads(f.read_text(encoding="utf-8")) for f in files]


def paths(value: Any, limit: int = 12) -> list[Path_]:
    """Every path into ``value`` (root first), without recursion and no deeper than ``limit``."""
    out: list[Path_] = []
    stack: list[tuple[Any, Path_]] = [(value, ())]
    while stack:
        node, path = stack.pop()
        out.append(path)
        if len(path) >= limit:
            continue
        if isinstance(node, dict):
            stack.extend((v, (*path, k)) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, (*path, i)) for i, v in enumerate(node))
    return out


def get(data: Any, path: Path_) -> Any:
    for key in path:
        data = data[key]
    return data


def put(data: Any, path: Path_, value: Any) -> Any:
    """``data`` with the value at ``path`` replaced (the root itself when ``path`` is empty)."""
    if not path:
        return value
    get(data, path[:-1])[path[-1]] = value
    return data


def nested(depth: int, rng: random.Random) -> Any:
    """A value nested ``depth`` levels deep (lists or objects), built without recursion."""
    value: Any = rng.choice([1, "x", None, 0.5])
    for _ in range(depth):
        value = [value] if rng.random() < 0.5 else {"a": value}
    return value


# --- mutations of parsed data (each returns the new data) ---------------------------------------------------
def m_type_change(data: Any, rng: random.Random, python_only: bool) -> Any:
    path = rng.choice(paths(data))
    pool = PLAIN_VALUES + NUMBERS
    value = rng.choice(PYTHON_ONLY)() if python_only and rng.random() < 0.3 else copy.deepcopy(rng.choice(pool))
    return put(data, path, value)


def _number_paths(data: Any) -> list[Path_]:
    found = [p for p in paths(data) if isinstance(get(data, p), int | float) and not isinstance(get(data, p), bool)]
    return found or [()]


def m_number(data: Any, rng: random.Random, python_only: bool) -> Any:
    """A number made integral-float, huge, tiny, negative, non-finite, off by a half, or a bool."""
    path = rng.choice(_number_paths(data))
    if not path:
        return data
    x = get(data, path)
    choices: list[Callable[[], Any]] = [
        lambda: float(x),
        lambda: float(x) + 0.5,
        lambda: -x,
        lambda: x * 10 ** rng.randint(1, 400),
        lambda: float(x) * 10.0 ** rng.randint(1, 320),
        lambda: int(x) if math.isfinite(x) else x,
        lambda: rng.choice(NUMBERS),
        lambda: bool(x),
        lambda: str(x),
        lambda: round(float(x) * 1e6) / 1e6 + 1e-12,
    ]
    if python_only:
        choices.append(lambda: Decimal(str(x)))
        choices.append(lambda: 10**5000)
    try:
        value = rng.choice(choices)()
    except (OverflowError, ValueError):
        value = float("inf")
    return put(data, path, value)


def m_delete(data: Any, rng: random.Random, python_only: bool) -> Any:
    path = rng.choice(paths(data)[1:] or [()])
    if not path:
        return data
    parent = get(data, path[:-1])
    del parent[path[-1]]
    return data


def m_reorder(data: Any, rng: random.Random, python_only: bool) -> Any:
    """Shuffle the keys of an object or the items of an array."""
    containers = [p for p in paths(data) if isinstance(get(data, p), dict | list) and len(get(data, p)) > 1]
    if not containers:
        return data
    path = rng.choice(containers)
    node = get(data, path)
    if isinstance(node, dict):
        items = list(node.items())
        rng.shuffle(items)
        return put(data, path, dict(items))
    items = list(node)
    rng.shuffle(items)
    return put(data, path, items)


def m_deep(data: Any, rng: random.Random, python_only: bool) -> Any:
    path = rng.choice(paths(data))
    depth = rng.choice([2, 10, 63, 64, 65, 100, 500] + ([5000, 20000] if python_only else []))
    return put(data, path, nested(depth, rng))


def m_rename(data: Any, rng: random.Random, python_only: bool) -> Any:
    """Rename a key (a typo, another case, an empty or non-Unicode name, or a non-string key)."""
    objects = [p for p in paths(data) if isinstance(get(data, p), dict) and get(data, p)]
    if not objects:
        return data
    path = rng.choice(objects)
    node = get(data, path)
    old = rng.choice(list(node))
    if python_only and rng.random() < 0.2:
        new: Any = rng.choice([1, None, 2.5, ("t",)])
    else:
        new = rng.choice(KEY_VARIANTS)(str(old))
    return put(data, path, {(new if k == old else k): v for k, v in node.items()})


def m_add_key(data: Any, rng: random.Random, python_only: bool) -> Any:
    objects = [p for p in paths(data) if isinstance(get(data, p), dict)]
    if not objects:
        return data
    path = rng.choice(objects)
    get(data, path)[rng.choice(["extra", "x", "name", "$schema", "step", ""])] = copy.deepcopy(rng.choice(PLAIN_VALUES))
    return data


def m_swap(data: Any, rng: random.Random, python_only: bool) -> Any:
    """Swap two segments, two boundaries or two roles, or duplicate or drop a segment."""
    if not isinstance(data, dict):
        return data
    kind = rng.choice(["schedule", "boundaries", "models", "dup", "drop"])
    seq = data.get("schedule")
    if kind in ("schedule", "boundaries") and isinstance(data.get(kind), list) and len(data[kind]) > 1:
        items = data[kind]
        i, j = rng.sample(range(len(items)), 2)
        items[i], items[j] = items[j], items[i]
    elif kind == "models" and isinstance(data.get("models"), dict) and len(data["models"]) > 1:
        keys = list(data["models"])
        a, b = rng.sample(keys, 2)
        m = data["models"]
        m[a], m[b] = m[b], m[a]
    elif kind == "dup" and isinstance(seq, list) and seq:
        item = rng.choice(seq)  # a shallow copy: a segment may hold a 20,000-level value by now
        seq.insert(rng.randrange(len(seq) + 1), dict(item) if isinstance(item, dict) else item)
    elif kind == "drop" and isinstance(seq, list) and seq:
        seq.pop(rng.randrange(len(seq)))
    return data


def m_string(data: Any, rng: random.Random, python_only: bool) -> Any:
    strings = [p for p in paths(data) if isinstance(get(data, p), str)] or [()]
    path = rng.choice(strings)
    if not path:
        return data
    options = ["", " ", "x" * 10_000, "\u00e9\u4e2d\U0001f600", "\x00\x1f", "large", "small", "LSL", "50"]
    if python_only:
        options.append("\udcff")
    return put(data, path, rng.choice(options))


def m_root(data: Any, rng: random.Random, python_only: bool) -> Any:
    """A root that is not an object."""
    if rng.random() < 0.2:
        return [data]
    return copy.deepcopy(rng.choice([[], "profile", 1, 1.5, None, True, [1, 2]]))


DATA_MUTATIONS: list[tuple[Callable[..., Any], int]] = [
    (m_type_change, 20),
    (m_number, 25),
    (m_delete, 10),
    (m_reorder, 6),
    (m_deep, 5),
    (m_rename, 8),
    (m_add_key, 5),
    (m_swap, 8),
    (m_string, 6),
    (m_root, 1),
]


# --- mutations of JSON text (str -> str) and bytes ---------------------------------------------------------
def _number_spans(text: str) -> list[tuple[int, int]]:
    spans, i = [], 0
    in_string = False
    while i < len(text):
        c = text[i]
        if in_string:
            if c == "\\":
                i += 1
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "-0123456789":
            j = i + 1
            while j < len(text) and text[j] in "0123456789.eE+-":
                j += 1
            spans.append((i, j))
            i = j
            continue
        i += 1
    return spans


#: What a number literal is replaced by: non-standard tokens Python reads, overflowing and over-long numbers,
#: integral floats, and spellings JSON forbids.
NUMBER_TOKENS = [
    *("NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1E400", "2e308", "1e-400"),
    *("9" * 5000, "-" + "9" * 4400, "9" * 400),
    *("50.0", "5e1", "-0", "0.0", "1.0e0"),
    *("00", "1.", ".5", "+1", "0x10", "1_000"),
]
#: Stray text inserted anywhere.
STRAY_TEXT = [*'{}[],:"\\ \n\t', "//", "/*", "'", "\x00", "\u00e9", "\\ud800", "tru"]


def t_number_token(text: str, rng: random.Random) -> str:
    spans = _number_spans(text)
    if not spans:
        return text
    i, j = rng.choice(spans)
    return text[:i] + rng.choice(NUMBER_TOKENS) + text[j:]


def t_truncate(text: str, rng: random.Random) -> str:
    return text[: rng.randrange(len(text))]


def t_delete_chars(text: str, rng: random.Random) -> str:
    i = rng.randrange(len(text))
    return text[:i] + text[i + rng.randint(1, 3) :]


def t_insert_char(text: str, rng: random.Random) -> str:
    i = rng.randrange(len(text) + 1)
    return text[:i] + rng.choice(STRAY_TEXT) + text[i:]


def t_duplicate_key(text: str, rng: random.Random) -> str:
    """Insert a key that already exists right after an object opens (the object then holds it twice)."""
    opens = [i for i, c in enumerate(text) if c == "{"]
    if not opens:
        return text
    i = rng.choice(opens) + 1
    key = rng.choice(["name", "schema_version", "num_inference_steps", "model", "start", "step", "large", "id"])
    value = rng.choice(['"x"', "1", "50.0", "null", "{}", "[]"])
    rest = text[i:].lstrip()
    sep = "" if rest.startswith("}") else ","
    return f'{text[:i]}"{key}": {value}{sep}{text[i:]}'


def t_deep_text(text: str, rng: random.Random) -> str:
    depth = rng.choice([65, 500, 3000, 100_000])
    if rng.random() < 0.5:
        return "[" * depth + text + "]" * depth
    spans = _number_spans(text)
    if not spans:
        return text
    i, j = rng.choice(spans)
    return text[:i] + '{"a":' * depth + "1" + "}" * depth + text[j:]


def t_surrogate(text: str, rng: random.Random) -> str:
    """A JSON escape that decodes to a lone surrogate, inside some string."""
    quotes = [i for i, c in enumerate(text) if c == '"']
    if not quotes:
        return text
    i = rng.choice(quotes) + 1
    return text[:i] + rng.choice(["\\ud800", "\\udfff", "\\ud83d", "\\u0000"]) + text[i:]


def t_loose_json(text: str, rng: random.Random) -> str:
    """What people write that JSON forbids: trailing commas, comments, single quotes, trailing garbage."""
    choice = rng.randrange(5)
    if choice == 0:
        return text.replace("}", ",}", 1)
    if choice == 1:
        return "// profile\n" + text
    if choice == 2:
        return text.replace('"', "'", 4)
    if choice == 3:
        return text + rng.choice(["x", "{}", "\n\n", "\x00"])
    return rng.choice(["", " ", "null", "[]", "{}", "0", '"profile"'])


TEXT_MUTATIONS: list[tuple[Callable[[str, random.Random], str], int]] = [
    (t_number_token, 20),
    (t_truncate, 6),
    (t_delete_chars, 8),
    (t_insert_char, 8),
    (t_duplicate_key, 10),
    (t_deep_text, 4),
    (t_surrogate, 5),
    (t_loose_json, 4),
]


def b_corrupt(raw: bytes, rng: random.Random) -> bytes:
    """Invalid UTF-8, another encoding, or a byte-order mark."""
    choice = rng.randrange(5)
    i = rng.randrange(len(raw) + 1)
    if choice == 0:
        return raw[:i] + rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80", b"\xf8\x88\x80\x80\x80"]) + raw[i:]
    if choice == 1:
        return raw.decode("utf-8", "surrogatepass").encode("utf-16", "surrogatepass")
    if choice == 2:
        return b"\xef\xbb\xbf" + raw
    if choice == 3:
        return raw.decode("utf-8", "surrogatepass").encode("latin-1", "replace")
    return raw[:i] + b"\x00" + raw[i:]


def pick(rng: random.Random, weighted: list[tuple[Any, int]]) -> Any:
    return rng.choices([f for f, _ in weighted], weights=[w for _, w in weighted])[0]


# --- one case ----------------------------------------------------------------------------------------------
class Case:
    """One mutated profile: parsed data for ``from_dict`` or bytes for ``load_profile``, and what was done."""

    def __init__(self, index: int, data: Any = None, raw: bytes | None = None, steps: list[str] | None = None):
        self.index = index
        self.data = data
        self.raw = raw
        self.steps = steps or []

    @property
    def kind(self) -> str:
        return "text" if self.raw is not None else "data"


def make_case(seed: int, index: int, bases: list[dict]) -> Case:
    """Case ``index`` of ``seed``: deterministic and independent of how many cases run."""
    rng = random.Random(f"{seed}:{index}")
    data: Any = copy.deepcopy(rng.choice(bases))
    as_text = rng.random() < 0.5
    steps: list[str] = []
    for _ in range(rng.choice([1, 1, 1, 2, 2, 3])):
        mutation = pick(rng, DATA_MUTATIONS)
        data = mutation(data, rng, not as_text)
        steps.append(mutation.__name__)
    if not as_text:
        return Case(index, data=data, steps=steps)
    try:
        text = json.dumps(data, indent=rng.choice([None, 2]), ensure_ascii=rng.random() < 0.5)
    except (ValueError, RecursionError):  # a number json cannot write: fall back to the plain profile
        text = json.dumps(rng.choice(bases))
        steps.append("unwritable->base")
    for _ in range(rng.choice([0, 1, 1, 2])):
        mutation = pick(rng, TEXT_MUTATIONS)
        text = mutation(text, rng) if text else text
        steps.append(mutation.__name__)
    raw = text.encode("utf-8", "surrogatepass")
    if rng.random() < 0.08:
        raw = b_corrupt(raw, rng)
        steps.append("b_corrupt")
    return Case(index, raw=raw, steps=steps)


# --- checking ----------------------------------------------------------------------------------------------
def integer_fields(value: Any, schema: dict, root: dict, path: str = "$") -> Iterator[tuple[str, Any]]:
    """(path, value) of every value at a place the schema types as integer (this walk is the fuzzer's own)."""
    while "$ref" in schema:
        schema = get(root, tuple(schema["$ref"].removeprefix("#/").split("/")))
    kind = schema.get("type")
    if value is not None and (kind == "integer" or (isinstance(kind, list) and "integer" in kind)):
        yield path, value
    if isinstance(value, dict):
        for key, child in value.items():
            sub = schema.get("properties", {}).get(key, schema.get("additionalProperties"))
            if isinstance(sub, dict):
                yield from integer_fields(child, sub, root, f"{path}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, child in enumerate(value):
            yield from integer_fields(child, schema["items"], root, f"{path}[{i}]")


class Escape(Exception):
    """A loaded profile broke a promise (round trip, integer types), or a rejection was malformed."""


def check_loaded(profile: Profile) -> None:
    data = profile.to_dict()
    schema = profile_schema()
    for path, value in integer_fields(data, schema, schema):
        if type(value) is not int:
            raise Escape(f"{path} is {value!r} ({type(value).__name__}); the schema says integer")
    if validate_profile_dict(data):
        raise Escape(f"to_dict() of a loaded profile is invalid: {validate_profile_dict(data)}")
    if Profile.from_dict(data) != profile:
        raise Escape("from_dict(to_dict()) differs from the loaded profile")
    try:
        json.dumps(data, allow_nan=False, ensure_ascii=False).encode("utf-8")  # what save_profile writes
    except (ValueError, UnicodeEncodeError) as bad:
        raise Escape(f"a loaded profile cannot be saved: {bad}") from None


def check_rejected(exc: ProfileError, case: Case) -> None:
    if not exc.errors or not all(isinstance(e, str) and e.strip() for e in exc.errors):
        raise Escape(f"ProfileError without problem lines: {exc.errors!r}")
    if case.kind == "data" and not all(e.startswith("$") for e in exc.errors):
        raise Escape(f"a rejection line names no JSON path: {exc.errors!r}")
    try:
        str(exc).encode("utf-8")  # the CLI prints it
    except UnicodeEncodeError as bad:
        raise Escape(f"the message cannot be printed as UTF-8: {bad}") from None


def run_case(case: Case, scratch: Path) -> tuple[str, BaseException | None]:
    """('loaded' | 'rejected' | 'escaped', the exception when escaped)."""
    try:
        if case.raw is not None:
            scratch.write_bytes(case.raw)
            profile = load_profile(scratch)
        else:
            profile = Profile.from_dict(case.data)
            if validate_profile_dict(case.data):
                raise Escape("from_dict loaded data that validate_profile_dict rejects")
        check_loaded(profile)
    except ProfileError as exc:
        if case.raw is None and not validate_profile_dict(case.data):
            return "escaped", Escape("from_dict rejected data that validate_profile_dict accepts")
        try:
            check_rejected(exc, case)
        except Escape as bad:
            return "escaped", bad
        return "rejected", None
    except Exception as exc:  # anything else is exactly what the fuzzer looks for
        return "escaped", exc
    return "loaded", None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="Random seed (default 0).")
    parser.add_argument("--count", type=int, default=10_000, help="Number of mutated profiles (default 10000).")
    parser.add_argument("--case", type=int, default=None, help="Replay one case and show what it did.")
    parser.add_argument("--show", type=int, default=5, help="Escapes to print in full (default 5).")
    args = parser.parse_args(argv)
    bases = shipped()
    with tempfile.TemporaryDirectory(prefix="fuzz-profiles-") as tmp:
        scratch = Path(tmp) / "profile.json"
        if args.case is not None:
            case = make_case(args.seed, args.case, bases)
            outcome, exc = run_case(case, scratch)
            print(f"case {case.index} ({case.kind}: {', '.join(case.steps)}): {outcome}")
            if exc is not None:
                traceback.print_exception(exc)
            return 0 if outcome != "escaped" else 1
        counts: collections.Counter[str] = collections.Counter()
        kinds: collections.Counter[str] = collections.Counter()
        escapes: collections.Counter[str] = collections.Counter()
        shown = 0
        started = time.perf_counter()
        for index in range(args.count):
            case = make_case(args.seed, index, bases)
            outcome, exc = run_case(case, scratch)
            counts[outcome] += 1
            kinds[f"{case.kind} {outcome}"] += 1
            if exc is not None:
                escapes[type(exc).__name__] += 1
                if shown < args.show:
                    shown += 1
                    print(f"escape in case {index} ({case.kind}: {', '.join(case.steps)}): {type(exc).__name__}: ")
                    print("  " + str(exc)[:500].replace("\n", "\n  "))
        elapsed = time.perf_counter() - started
    print(
        f"seed {args.seed}: {args.count} mutated profiles in {elapsed:.1f} s: {counts['loaded']} loaded, "
        f"{counts['rejected']} rejected with ProfileError, {counts['escaped']} escaped"
    )
    print("  by input: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
    if escapes:
        print("  escaped by exception type: " + ", ".join(f"{k} {n}" for k, n in escapes.most_common()))
        print(f"  replay one with: python scripts/fuzz_profiles.py --seed {args.seed} --case N")
    return 1 if escapes else 0


if __name__ == "__main__":
    sys.exit(main())
