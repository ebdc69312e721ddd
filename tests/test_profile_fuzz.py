"""The profile loader under hostile input: every input loads (as the schema promises) or is a ProfileError.

Explicit regressions for what mutation fuzzing found, property-based mutations for CI, and a short run of
``scripts/fuzz_profiles.py`` itself (its 10,000-profile run is in docs/profile-format.md, "Robustness").
"""

from __future__ import annotations

import copy
import importlib.util
import json
import math
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowblending.cli import cli
from flowblending.errors import ProfileError
from flowblending.profile import (
    MAX_DEPTH,
    Profile,
    load_profile,
    parse_profile_text,
    save_profile,
    validate_profile_dict,
)

ROOT = Path(__file__).resolve().parents[1]
WAN21 = json.loads((ROOT / "profiles" / "wan21.json").read_text(encoding="utf-8"))

#: Every place wan21 holds a value the schema types as integer (see flowblending/schema/profile.schema.json).
INTEGER_PATHS = [
    ("setting", "num_inference_steps"),
    ("setting", "height"),
    ("setting", "width"),
    ("setting", "num_frames"),
    ("setting", "max_sequence_length"),
    ("boundaries", 0, "step"),
    ("boundaries", 1, "step"),
    ("cost", "steps", "large"),
    ("cost", "steps", "small"),
    ("models", "large", "parameters"),
    ("models", "small", "parameters"),
]


def _wan21() -> dict:
    return copy.deepcopy(WAN21)


def _get(data, path):
    for key in path:
        data = data[key]
    return data


def _set(data, path, value):
    _get(data, path[:-1])[path[-1]] = value
    return data


def _errors(data) -> list[str]:
    with pytest.raises(ProfileError) as info:
        Profile.from_dict(data)
    return info.value.errors


def _text_errors(text: str) -> list[str]:
    with pytest.raises(ProfileError) as info:
        Profile.from_dict(parse_profile_text(text, "p.json"), "p.json")
    return info.value.errors


# --- integral floats load as the ints the schema promises ----------------------------------------------------
def test_integral_float_step_count_loads_as_int_50():
    data = _wan21()
    data["setting"]["num_inference_steps"] = 50.0
    profile = Profile.from_dict(data)
    assert type(profile.setting.num_inference_steps) is int
    assert profile.setting.num_inference_steps == 50
    assert len(profile.plan()) == 50 and profile.plan()[20] == "small"
    assert profile == load_profile("wan21")
    assert type(data["setting"]["num_inference_steps"]) is float  # the caller's data is left as it was


def test_every_integer_field_given_as_float_is_normalised():
    data = _wan21()
    for path in INTEGER_PATHS:
        _set(data, path, float(_get(data, path)))
    profile = Profile.from_dict(data)
    out = profile.to_dict()
    for path in INTEGER_PATHS:
        value = _get(out, path)
        assert type(value) is int and value == _get(WAN21, path), path
    assert [type(b.step) for b in profile.boundaries] == [int, int]
    assert profile.models["large"].parameters == 14_288_491_584
    assert profile == load_profile("wan21")


def test_exponent_notation_in_json_text_loads_as_int(tmp_path):
    text = (ROOT / "profiles" / "wan21.json").read_text(encoding="utf-8")
    text = text.replace('"num_inference_steps": 50', '"num_inference_steps": 5e1', 1)
    text = text.replace('"step": 20', '"step": 20.0', 1)
    path = tmp_path / "p.json"
    path.write_text(text, encoding="utf-8")
    profile = load_profile(path)
    assert (profile.setting.num_inference_steps, profile.boundaries[0].step) == (50, 20)
    assert type(profile.setting.num_inference_steps) is int and type(profile.boundaries[0].step) is int
    saved = save_profile(profile, tmp_path / "saved.json")
    assert '"num_inference_steps": 50,' in saved.read_text(encoding="utf-8")


def test_cli_validate_and_dry_run_accept_step_count_50_0(tmp_path):
    data = _wan21()
    data["setting"]["num_inference_steps"] = 50.0
    path = tmp_path / "fifty.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(cli, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"{path}: ok"
    result = runner.invoke(cli, ["run", "--profile", str(path), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "plan for 50 steps, schedule LSL" in result.output
    assert "steps per role: large: 30, small: 20" in result.output


def test_a_half_step_is_still_rejected_with_the_fix():
    data = _wan21()
    data["setting"]["num_inference_steps"] = 50.5
    assert _errors(data) == [
        "$.setting.num_inference_steps: 50.5 is not of type 'integer'; write an integer such as 50 "
        "(not 50.5, a string or true/false)."
    ]


# --- non-finite and out-of-range numbers --------------------------------------------------------------------
def test_nan_boundary_in_json_text_names_its_path(tmp_path):
    text = json.dumps(_wan21()).replace('"sigma": ', '"sigma": NaN, "was": ', 1)
    path = tmp_path / "nan.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    assert info.value.errors == [
        "$.boundaries[0].sigma: NaN is not a finite number; profiles hold finite numbers only (JSON has no NaN or "
        "Infinity, and a number beyond about 1.8e308 reads as Infinity)."
    ]
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 1
    assert f"{path}: $.boundaries[0].sigma: NaN is not a finite number" in result.output


@pytest.mark.parametrize(
    "token, spelled", [("Infinity", "Infinity"), ("-Infinity", "-Infinity"), ("1e999", "Infinity")]
)
def test_infinite_numbers_in_json_text_name_their_path(token, spelled):
    text = json.dumps(_wan21()).replace('"flops_ratio": ', f'"flops_ratio": {token}, "was": ', 1)
    errors = _text_errors(text)
    assert len(errors) == 1
    assert errors[0].startswith(f"$.cost.flops_ratio: {spelled} is not a finite number")


def test_non_finite_floats_in_a_dict_name_their_path():
    data = _wan21()
    data["schedule"][1]["guidance_scale"] = float("nan")
    data["setting"]["guidance_scale"] = -math.inf
    errors = _errors(data)
    assert [e.split(":")[0] for e in errors] == ["$.setting.guidance_scale", "$.schedule[1].guidance_scale"]
    assert errors[0].startswith("$.setting.guidance_scale: -Infinity is not a finite number")


def test_huge_integers_are_rejected_by_path_without_printing_them():
    data = _wan21()
    data["models"]["large"]["parameters"] = 10**5000  # too long for int -> str: the message must not try
    assert _errors(data) == [
        "$.models.large.parameters: an integer of about 5001 digits is beyond the float range (about 1.8e308); "
        "profiles hold numbers a float can represent."
    ]
    text = json.dumps(_wan21()).replace('"parameters": 14288491584', '"parameters": ' + "9" * 5000, 1)
    errors = _text_errors(text)
    assert errors == [
        "$.models.large.parameters: an integer of 5000 digits is beyond the float range (about 1.8e308); "
        "profiles hold numbers a float can represent."
    ]


def test_an_integer_flop_count_beyond_float_range_times_steps_is_a_mismatch_not_an_overflow():
    data = _wan21()
    data["cost"]["flops_per_step"]["large"] = int(1.7e308)  # fits a float, times 50 steps does not
    errors = _errors(data)
    assert "$.cost.flops_total: 1.92216e+16 but the schedule costs inf." in errors
    assert "$.cost.flops_large_only: 2.995e+16 but large-only costs inf." in errors


def test_a_boolean_where_a_number_belongs_says_what_to_write():
    data = _wan21()
    data["setting"]["num_inference_steps"] = True
    data["boundaries"][0]["sigma"] = False
    assert _errors(data) == [
        "$.boundaries[0].sigma: False is not of type 'number'; write a number such as 0.5 (not a string or "
        "true/false).",
        "$.setting.num_inference_steps: True is not of type 'integer'; write an integer such as 50 (not 50.5, a "
        "string or true/false).",
    ]


# --- structure: roots, nesting, keys, text ------------------------------------------------------------------
@pytest.mark.parametrize("root", [None, [], [1, 2], "wan21", 1, 1.5, True])
def test_a_root_that_is_not_an_object_is_one_clean_error(root):
    errors = _errors(root)
    assert len(errors) == 1
    assert errors[0].startswith(f"$: {root!r} is not of type 'object'; write an object")


def test_deep_nesting_is_refused_at_the_limit():
    deep: object = 1
    for _ in range(10_000):
        deep = [deep]
    data = _wan21()
    data["calibration"] = {"curve": deep}
    errors = _errors(data)
    assert len(errors) == 1
    assert errors[0].endswith(f": nested deeper than {MAX_DEPTH} levels; flatten it (profiles are shallow data).")
    assert errors[0].startswith("$.calibration.curve[0][0]")
    ok = _wan21()
    ok["calibration"] = {"curve": [[[[1.0]]]]}
    assert Profile.from_dict(ok).calibration == {"curve": [[[[1.0]]]]}


def test_deep_nesting_in_json_text_is_a_profile_error():
    text = '{"calibration": ' + "[" * 200_000 + "]" * 200_000 + "}"
    with pytest.raises(ProfileError, match=f"p.json nests its JSON too deeply to read; .* {MAX_DEPTH} levels"):
        parse_profile_text(text, "p.json")


def test_duplicate_keys_are_errors_naming_the_object():
    text = json.dumps(_wan21()).replace(
        '"num_inference_steps": 50', '"num_inference_steps": 50, "num_inference_steps": 40', 1
    )
    with pytest.raises(ProfileError) as info:
        parse_profile_text(text, "p.json")
    assert info.value.errors == [
        "$.setting: key 'num_inference_steps' appears 2 times in one object; keep exactly one (JSON readers "
        "disagree on which copy counts)."
    ]


def test_cli_validate_prints_repeated_keys_one_line_each(tmp_path):
    text = json.dumps(_wan21()).replace('"name": "wan21"', '"name": "wan21", "name": "wan22"', 1)
    path = tmp_path / "twice.json"
    path.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"{path}: $: key 'name' appears 2 times in one object; keep exactly one (JSON readers disagree on which "
        "copy counts)."
    ]


def test_broken_utf8_and_byte_order_mark(tmp_path):
    raw = (ROOT / "profiles" / "wan21.json").read_bytes()
    broken = tmp_path / "broken.json"
    broken.write_bytes(raw[:100] + b"\xff" + raw[100:])
    with pytest.raises(ProfileError, match=r"broken.json is not UTF-8 text \(invalid start byte at byte 100\)"):
        load_profile(broken)
    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + raw)
    assert load_profile(bom) == load_profile("wan21")


def test_lone_surrogate_strings_and_keys_are_rejected_by_path():
    data = _wan21()
    data["description"] = "bad \ud800 text"
    data["provenance"]["\udcff"] = 1
    errors = _errors(data)
    assert errors[0] == (
        "$.description: the string 'bad \\ud800 text' holds a lone surrogate '\\ud800' at position 4, which is "
        "not Unicode text; remove it or write the character itself."
    )
    assert errors[1].startswith("$.provenance: key '\\udcff' holds a lone surrogate")
    text = json.dumps(_wan21()).replace('"description": "', '"description": "\\ud800', 1)
    assert _text_errors(text)[0].startswith('$.description: the string "\\ud800WAN 2.1')


@pytest.mark.parametrize(
    "path, value, kind",
    [
        (("setting", "guidance_scale"), 1j, "complex"),
        (("setting", "guidance_scale"), Decimal("5.0"), "Decimal"),
        (("schedule",), ({"model": "large", "start": 0.0, "end": 1.0},), "tuple"),
        (("provenance", "seeds"), {1, 2}, "set"),
    ],
)
def test_values_json_does_not_have_are_rejected_by_path(path, value, kind):
    data = _set(_wan21(), path, value)
    errors = _errors(data)
    assert len(errors) == 1
    assert errors[0].startswith("$." + ".".join(path) + ": ")
    assert f"is of type {kind}, not a JSON value; use a dict, list, str, int, float, bool or None." in errors[0]


def test_non_string_keys_are_rejected():
    data = _wan21()
    data["models"][1] = data["models"]["small"]
    assert _errors(data) == ["$.models: key 1 is of type int; JSON object keys are strings, write it as one."]


@pytest.mark.parametrize(
    "name, message",
    [
        ("x" * 5000, "is not a usable path (File name too long)"),
        ("~no-such-user-here/p.json", "is not a usable path"),
        (123, "got int 123; for a dict use Profile.from_dict(data)"),
        ({"name": "wan21"}, "got dict"),
    ],
)
def test_unusable_profile_names_are_profile_errors(name, message):
    with pytest.raises(ProfileError) as info:
        load_profile(name)
    assert message in str(info.value)
    assert len(str(info.value)) < 400  # a 5,000-character name is cut short in the message


def test_dry_run_with_an_unknown_scheduler_class_is_one_error_line(tmp_path):
    data = _wan21()
    data["setting"]["scheduler"]["class"] = "NoSuchScheduler"
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    result = CliRunner().invoke(cli, ["run", "--profile", str(path), "--dry-run"])
    assert result.exit_code == 2
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert f"error: {path}: cannot compute the noise levels of setting.scheduler (class 'NoSuchScheduler')" in (
        result.output
    )


# --- property-based ----------------------------------------------------------------------------------------
def _outcome(data) -> Profile | list[str]:
    """The loaded profile, or the rejection's problem lines; anything else raised fails the test."""
    try:
        profile = Profile.from_dict(data)
    except ProfileError as exc:
        assert exc.errors and all(isinstance(e, str) and e.startswith("$") for e in exc.errors), exc.errors
        assert validate_profile_dict(data) == exc.errors
        return exc.errors
    assert validate_profile_dict(data) == []
    again = Profile.from_dict(profile.to_dict())
    assert again == profile
    for path in INTEGER_PATHS:  # wherever they survived the mutation, integer fields hold ints
        try:
            value = _get(profile.to_dict(), path)
        except (KeyError, IndexError, TypeError):
            continue
        assert value is None or type(value) is int, (path, value)
    return profile


_numbers = st.one_of(
    st.integers(-(10**20), 10**20),
    st.sampled_from([0, 1, 50, 10**308, 10**400, -(10**400), 2**63]),
    st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=False),
    st.integers(-1000, 1000).map(float),  # integral floats: the case JSON Schema counts as integers
    st.booleans(),
)
_values = st.recursive(
    st.one_of(st.none(), _numbers, st.text(max_size=6)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=8,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    picks=st.lists(st.sampled_from(INTEGER_PATHS), min_size=1, max_size=len(INTEGER_PATHS), unique=True),
    scale=st.sampled_from([1.0, -1.0, 1e300, 0.5, 1.0 + 2**-40]),
)
def test_integer_fields_as_floats_load_as_ints_or_are_rejected(picks, scale):
    data = _wan21()
    for path in picks:
        _set(data, path, float(_get(data, path)) * scale)
    result = _outcome(data)
    if scale == 1.0:  # the same numbers, spelled as floats: the same profile
        assert result == load_profile("wan21")


def _all_paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _all_paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _all_paths(v, (*prefix, i))


_PATHS = [p for p in _all_paths(WAN21) if p]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=st.lists(st.tuples(st.sampled_from(_PATHS), st.sampled_from(["set", "delete"]), _values), max_size=3))
def test_random_edits_load_or_are_rejected_cleanly(edits):
    data = _wan21()
    for path, action, value in edits:
        try:
            parent = _get(data, path[:-1])
            if action == "delete":
                del parent[path[-1]]
            else:
                parent[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier edit removed or replaced this path
    _outcome(data)


_TEXT = json.dumps(WAN21)
_TOKENS = ["NaN", "Infinity", "-Infinity", "1e999", "9" * 4400, "50.0", "5e1", "-0", "true", "null", "[", "{", '"']


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    start=st.integers(0, len(_TEXT)),
    cut=st.integers(0, 4),
    insert=st.one_of(st.sampled_from(_TOKENS), st.text(max_size=3)),
)
def test_edited_json_text_loads_or_is_rejected_cleanly(start, cut, insert):
    text = _TEXT[:start] + insert + _TEXT[start + cut :]
    try:
        data = parse_profile_text(text, "p.json")
    except ProfileError as exc:
        assert exc.errors and all(isinstance(e, str) and e for e in exc.errors)
        return
    _outcome(data)


def _fuzzer():
    spec = importlib.util.spec_from_file_location("fuzz_profiles", ROOT / "scripts" / "fuzz_profiles.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fuzz_script_short_run_has_no_escape(tmp_path, capsys):
    fuzz = _fuzzer()
    assert fuzz.main(["--seed", "7", "--count", "300"]) == 0
    out = capsys.readouterr().out
    assert "seed 7: 300 mutated profiles" in out and ", 0 escaped" in out
    case_a = fuzz.make_case(7, 42, fuzz.shipped())
    case_b = fuzz.make_case(7, 42, fuzz.shipped())
    assert (case_a.kind, case_a.steps, case_a.raw) == (case_b.kind, case_b.steps, case_b.raw)  # deterministic
