from __future__ import annotations

import apache_beam as beam

from unigeo.core.sample import SampleKey
from unigeo.pipeline.coders import SampleKeyCoder


def test_sample_key_coder_is_deterministic_and_round_trips() -> None:
    key = SampleKey("new_york", "89c25a3b", "test")
    coder = beam.coders.registry.get_coder(SampleKey)
    assert isinstance(coder, SampleKeyCoder) and coder.is_deterministic()
    assert coder.decode(coder.encode(key)) == key
    assert coder.encode(key) == coder.encode(SampleKey("new_york", "89c25a3b", "test"))
    assert key.name == "89c25a3b_test" and "." not in key.name
