"""Profile format v1 (v2: tests/test_distilled.py): shipped profiles validate, broken ones are rejected with JSON
paths, never a crash."""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import flowblending
from flowblending.errors import ProfileError
from flowblending.profile import (
    Profile,
    load_profile,
    save_profile,
    shipped_profile_names,
    validate_profile_dict,
)

SHIPPED = ["wan21", "ltxv", "ltxv-ldl"]


def _wan21() -> dict:
    return load_profile("wan21").to_dict()


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profiles_load_by_name_and_validate(name):
    profile = flowblending.load_profile(name)
    assert profile.name == name
    assert validate_profile_dict(profile.to_dict()) == []
    assert name in shipped_profile_names()


def test_wan21_is_the_papers_schedule():
    p = load_profile("wan21")
    assert [(s.model, s.start, s.end) for s in p.schedule] == [
        ("large", 0.0, 0.4),
        ("small", 0.4, 0.8),
        ("large", 0.8, 1.0),
    ]
    assert p.setting.num_inference_steps == 50
    assert (p.setting.width, p.setting.height, p.setting.num_frames) == (832, 480, 61)
    assert [b.step for b in p.boundaries] == [20, 40]
    assert p.boundaries[0].sigma > p.boundaries[1].sigma > 0


def test_ltxv_is_the_papers_schedule():
    p = load_profile("ltxv")
    assert [(s.model, s.start, s.end) for s in p.schedule] == [
        ("large", 0.0, 0.375),
        ("small", 0.375, 0.875),
        ("large", 0.875, 1.0),
    ]
    assert p.setting.num_inference_steps == 40
    assert [b.step for b in p.boundaries] == [15, 35]
    # LTXConditionPipeline's linear-quadratic schedule at steps 15 and 35 (tests/test_ltx_condition.py derives it)
    assert (p.pipeline_class, p.image_to_video) == ("LTXConditionPipeline", True)
    assert [(round(b.sigma, 6), b.timestep) for b in p.boundaries] == [(0.98125, 981.25), (0.421875, 421.875)]


def test_round_trip_through_a_file_is_lossless(tmp_path):
    p = load_profile("wan21")
    path = save_profile(p, tmp_path / "copy.json")
    again = load_profile(path)
    assert again == p
    assert json.loads(path.read_text()) == p.to_dict()


def test_save_refuses_an_invalid_profile_and_leaves_no_file(tmp_path):
    data = _wan21()
    data["schedule"][1]["model"] = "medium"
    with pytest.raises(ProfileError, match=r"\$\.schedule\[1\]\.model: unknown role 'medium'"):
        save_profile(data, tmp_path / "bad.json")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda d: d.pop("schedule"), r"\$: 'schedule' is a required property"),
        (lambda d: d["schedule"][0].update(end=0.5), r"\$\.schedule\[1\]\.start: 0.4 overlaps"),
        (lambda d: d["schedule"][2].update(start=0.9), r"\$\.schedule\[2\]\.start: 0.9 leaves a gap"),
        (lambda d: d["schedule"][1].update(model="tiny"), r"\$\.schedule\[1\]\.model: unknown role 'tiny'"),
        (
            lambda d: d["schedule"][2].update(end=1.2),
            r"\$\.schedule\[2\]\.end: 1.2 is greater than the maximum",
        ),
        (
            lambda d: d["schedule"][1].update(start=0.8, end=0.4),
            r"\$\.schedule\[1\]: segment .small. has start=0.8 >= end=0.4",
        ),
        (lambda d: d["pipeline"].update(base="huge"), r"\$\.pipeline\.base: unknown role 'huge'"),
        (lambda d: d.update(schema_version=0), r"\$\.schema_version: 0 is not one of \[1, 2\]"),
        (lambda d: d.update(schema_version=3), r"\$\.schema_version: this profile uses format version 3, newer"),
        (lambda d: d["boundaries"][0].update(step=19), r"\$\.boundaries\[0\]\.step: 19 but"),
        (lambda d: d["cost"].update(flops_total=1.0), r"\$\.cost\.flops_total"),
        (
            lambda d: d["setting"].update(num_inference_steps=0),
            r"\$\.setting\.num_inference_steps: 0 is less",
        ),
    ],
)
def test_each_kind_of_error_names_its_json_path(mutate, expected):
    data = _wan21()
    mutate(data)
    with pytest.raises(ProfileError, match=expected):
        Profile.from_dict(data)


def test_unknown_shipped_name_lists_the_known_ones():
    with pytest.raises(ProfileError, match=r"known: .*wan21"):
        load_profile("wan99")


def test_not_json_gives_line_and_column(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "name": "x",\n  oops\n}\n')
    with pytest.raises(ProfileError, match="line 3, column 3"):
        load_profile(bad)


def test_nan_is_rejected(tmp_path):
    bad = tmp_path / "nan.json"
    bad.write_text(json.dumps(_wan21()).replace('"flops_ratio": ', '"flops_ratio": NaN, "x": '))
    with pytest.raises(ProfileError, match=r"\$\.cost\.flops_ratio: NaN is not a finite number"):
        load_profile(bad)


# --- property-based: any mutation is either valid or a clean ProfileError -----------------------------------
_leaf_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 100),
    st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=False),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*prefix, i))


def _apply(data, path, action, new_value):
    if not path:
        return new_value if action == "replace" else data
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    if action == "delete":
        if isinstance(parent, dict):
            del parent[key]
        else:
            parent.pop(key)
    elif action == "replace":
        parent[key] = new_value
    elif action == "add" and isinstance(parent, dict):
        parent[f"{key}_extra"] = new_value
    elif action == "duplicate" and isinstance(parent, list):
        parent.append(copy.deepcopy(parent[key]))
    return data


BASES = {name: load_profile(name).to_dict() for name in SHIPPED}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutations_are_valid_or_rejected_cleanly(data):
    base = copy.deepcopy(BASES[data.draw(st.sampled_from(SHIPPED))])
    for _ in range(data.draw(st.integers(1, 3))):
        paths = list(_paths(base))
        path = data.draw(st.sampled_from(paths))
        action = data.draw(st.sampled_from(["replace", "delete", "add", "duplicate"]))
        base = _apply(base, path, action, data.draw(_leaf_values))
    try:
        profile = Profile.from_dict(base)
    except ProfileError as exc:
        assert exc.errors and all(isinstance(e, str) and e for e in exc.errors)
    else:
        assert validate_profile_dict(profile.to_dict()) == []


def test_a_newer_format_version_is_refused_with_one_line_naming_it_and_the_upgrade(tmp_path):
    import json
    from pathlib import Path

    from flowblending.profile import ProfileError, load_profile

    data = json.loads(Path(__file__).resolve().parents[1].joinpath("profiles", "wan21.json").read_text())
    data["schema_version"] = 3
    path = tmp_path / "v3.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    assert "format version 3, newer than the version 2" in str(info.value)
    problems = [line for line in str(info.value).splitlines() if line.strip().startswith("$.")]
    assert len(problems) == 1 and "pip install -U flowblending" in problems[0]
