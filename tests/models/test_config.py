"""config.json read against its schema (mdmlib.models.config): every valid config survives the
round trip, and every field of the schema refuses a value of the wrong JSON type by name."""
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mdmlib.models.config import MDLM_SCHEMA, SEDD_SCHEMA, DiTConfig, config_from_json, config_to_json

MDLM_JSON = {"model_type": "mdlm", "vocab_size": 11, "model_length": 12, "hidden_dim": 32, "cond_dim": 16, "n_blocks": 2, "n_heads": 4,
             "dropout": 0.1, "time_conditioning": False}
SEDD_JSON = {"tokens": 10, "graph": {"type": "absorb"}, "model": {"type": "ddit", "hidden_size": 32, "cond_dim": 16, "length": 12, "n_blocks": 2,
                                                                  "n_heads": 4, "scale_by_sigma": True, "dropout": 0.1}}
WRONG = {"integer": [2.0, True, "2", None, [2]], "number": ["0.1", False, None], "boolean": ["false", "true", 0, 1, None]}


@st.composite
def configs(draw):
    kind = draw(st.sampled_from(["mdlm", "sedd", "ar"]))
    heads = draw(st.integers(1, 4))
    return DiTConfig(vocab_size=draw(st.integers(3, 10**6)), model_length=draw(st.integers(1, 10**5)), hidden_dim=heads * 2 * draw(st.integers(1, 64)),
                     n_heads=heads, n_blocks=draw(st.integers(1, 48)), cond_dim=draw(st.integers(1, 512)), kind=kind,
                     time_conditioning=kind == "sedd" or (kind == "mdlm" and draw(st.booleans())), dropout=draw(st.floats(0, 0.99)),
                     scale_by_sigma=draw(st.booleans()) if kind == "sedd" else True)


@given(configs())
def test_every_config_survives_its_json_round_trip(config):
    assert config_from_json(json.loads(json.dumps(config_to_json(config)))) == config


@pytest.mark.parametrize("field", sorted(MDLM_SCHEMA))
def test_every_mdlm_field_refuses_the_wrong_json_type_by_name(field):
    for value in WRONG[MDLM_SCHEMA[field]]:
        with pytest.raises(TypeError, match=f"^{field} must be") as info:
            config_from_json({**MDLM_JSON, field: value})
        assert json.dumps(value) in str(info.value)


@pytest.mark.parametrize("field", sorted(SEDD_SCHEMA))
def test_every_sedd_field_refuses_the_wrong_json_type_by_name(field):
    for value in WRONG[SEDD_SCHEMA[field][1]]:
        with pytest.raises(TypeError, match=f"^model.{field} must be"):
            config_from_json({**SEDD_JSON, "model": {**SEDD_JSON["model"], field: value}})


def test_the_published_forms_read_as_their_configs():
    assert config_from_json(MDLM_JSON) == DiTConfig(vocab_size=11, model_length=12, hidden_dim=32, n_heads=4, n_blocks=2, cond_dim=16)
    assert config_from_json({**MDLM_JSON, "time_conditioning": True}).time_conditioning is True
    sedd = config_from_json({**SEDD_JSON, "model": {**SEDD_JSON["model"], "scale_by_sigma": False}})
    assert (sedd.kind, sedd.vocab_size, sedd.scale_by_sigma, sedd.time_conditioning) == ("sedd", 11, False, True)
    assert config_from_json({k: v for k, v in MDLM_JSON.items() if k != "model_type"}).kind == "mdlm"  # absent means MDLM
    assert config_from_json({**MDLM_JSON, "architectures": ["MDLM"], "torch_dtype": "float32"}).kind == "mdlm"  # what transformers adds is ignored


@pytest.mark.parametrize("field", ["vocab_size", "model_length", "hidden_dim", "n_heads", "n_blocks", "cond_dim"])
def test_dit_config_sizes_are_ints_not_bools_or_floats(field):
    base = dict(vocab_size=11, model_length=12, hidden_dim=32, n_heads=4, n_blocks=2, cond_dim=16)
    for value in (True, 2.0, "2", None):
        with pytest.raises(TypeError, match=f"{field} must be a positive integer"):
            DiTConfig(**{**base, field: value})
