"""The sample format: the published JSON Schema matches the typed metadata and every built sample."""

from __future__ import annotations

import json
import typing
from pathlib import Path

import jsonschema
import pytest

from unigeo.core import sample as fmt
from unigeo.outputs.readers import iter_shard


def keys(td: type) -> set[str]:
    return set(typing.get_type_hints(td))


def test_schema_names_exactly_the_typed_fields() -> None:
    schema = fmt.json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    defs = schema["$defs"]
    assert set(schema["properties"]) == keys(fmt.SampleMeta)
    assert set(schema["required"]) == set(fmt.SampleMeta.__required_keys__)
    for td, name in ((fmt.PanoramaMeta, "panorama"), (fmt.CropMeta, "crop"), (fmt.TileMeta, "tile"),
                     (fmt.TextMeta, "text")):
        assert set(defs[name]["properties"]) == keys(td), name
        assert set(defs[name]["required"]) == set(td.__required_keys__), name


def test_every_built_sample_validates(tiny_build: Path) -> None:
    validator = jsonschema.Draft202012Validator(fmt.json_schema())
    n = 0
    for shard in sorted(tiny_build.glob("shards/*/*.tar")):
        for key, members in iter_shard(str(shard)):
            meta = json.loads(members[fmt.JSON])
            errors = [e.message for e in validator.iter_errors(meta)]
            assert not errors, (key, errors)
            assert key == meta["key"] == fmt.sample_key(meta["cell"], meta["split"])
            assert set(fmt.crop_members(meta)) == {m for m in members if fmt.is_crop(m)}
            n += 1
    assert n > 5


def test_the_schema_catches_a_wrong_sample(tiny_build: Path) -> None:
    shard = sorted(tiny_build.glob("shards/*/*.tar"))[0]
    _, members = next(iter_shard(str(shard)))
    meta = json.loads(members[fmt.JSON])
    meta["split"] = "validation"
    del meta["panoramas"][0]["crops"][0]["yaw"]
    assert len(list(jsonschema.Draft202012Validator(fmt.json_schema()).iter_errors(meta))) == 2


@pytest.mark.parametrize(("value", "year"), [
    ("2021-05-01", 2021), ("2021-05-01T23:30:00-05:00", 2021), ("2019-12-31 23:59", 2019), (" 2020-01-01Z ", 2020),
    ("2021-13-45", -1), ("2021-02-30", -1), ("2021", -1), ("never", -1), ("", -1), (None, -1),
])
def test_capture_year(value: object, year: int) -> None:
    assert fmt.capture_year(value) == year


def test_keys_round_trip_and_bad_keys_are_refused() -> None:
    assert fmt.parse_key(fmt.sample_key("89e37a093", "test")) == ("89e37a093", "test")
    with pytest.raises(ValueError, match="train\\|test"):
        fmt.parse_key("89e37a093.test")
    assert fmt.crop_member(3) == "sv.003.jpg" and fmt.member_kind("sv.003.jpg") == fmt.CROP_KIND
