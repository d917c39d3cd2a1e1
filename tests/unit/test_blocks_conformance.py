"""check_block over every registered block: declared ports, params round-trip, invalid params refused."""

import pytest
from pydantic import ValidationError as PydanticValidationError

from builder.errors import BlockError
from builder.registry import ENTRY_POINT_GROUP, all_blocks, get_block, register_block
from builder.spec import Block, BlockParams, Kind, Price, PriceUnit, check_block

BLOCKS = [b for b in all_blocks() if not b.id.startswith("test.")]


def test_catalog_has_the_foundation_blocks():
    refs = {b.ref() for b in BLOCKS}
    assert {
        "chat.faq-csv@1.0.0",
        "chat.minilm-encoder@1.0.0",
        "chat.intent-classifier@1.0.0",
        "compute.local@1.0.0",
        "service.api@1.0.0",
    } <= refs


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.ref())
def test_block_declaration_is_consistent(block):
    assert check_block(block) == []
    spec = block.spec_dict()
    assert spec["description"] and spec["params_schema"]["type"] == "object"


def _invalid_values(field_schema: dict) -> list:
    """Values that the field's declared constraints must refuse."""
    bad = []
    if "minimum" in field_schema:
        bad.append(field_schema["minimum"] - 1)
    if "exclusiveMinimum" in field_schema:
        bad.append(field_schema["exclusiveMinimum"])
    if "maximum" in field_schema:
        bad.append(field_schema["maximum"] + 1)
    if "enum" in field_schema:
        bad.append("not-a-choice")
    if field_schema.get("type") in ("integer", "number"):
        bad.append("not a number")
    return bad


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.ref())
def test_params_round_trip_and_refuse_generated_invalid_values(block):
    schema = block.Params.model_json_schema()
    required = {k: "x" for k in schema.get("required", [])}
    params = block.Params(**required)
    assert block.Params(**params.model_dump()) == params
    with pytest.raises(PydanticValidationError):
        block.Params(**required, no_such_param=1)
    for name, field in schema["properties"].items():
        for value in _invalid_values(field):
            with pytest.raises(PydanticValidationError):
                block.Params(**{**required, name: value})


def test_badly_declared_block_is_refused_at_registration():
    class Broken(Block):
        id = "Not An Id"
        version = "1"
        kind = Kind.MODEL
        domain = "x"
        price = Price(0, PriceUnit.RUN)
        provider = "nobody"
        license = "MIT"
        description = "broken"

    with pytest.raises(BlockError, match="id 'Not An Id'.*version '1'.*provider 'nobody'"):
        register_block(Broken)


def test_service_blocks_need_a_call_price():
    class NoCallPrice(Block):
        id = "x.svc"
        version = "1.0.0"
        kind = Kind.SERVICE
        domain = "x"
        Params = BlockParams
        price = Price(0, PriceUnit.RUN)
        provider = "0x" + "1" * 40
        license = "MIT"
        description = "svc"

    assert "a service block needs a call_price (per 1k calls)" in check_block(NoCallPrice)


def test_blocks_are_published_through_the_entry_point_group():
    from importlib.metadata import entry_points

    names = {ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    assert {"blocks.chat", "blocks.compute", "blocks.service"} <= names


def test_get_block_unknown_suggests():
    with pytest.raises(BlockError, match="did you mean 'chat.faq-csv'"):
        get_block("chat.faq-cvs", "1.0.0")
