import pytest

from builder.money import format_aic, parse_amount


@pytest.mark.parametrize(
    ("text", "wei"),
    [
        ("1 AIC", 10**18),
        ("0.5 aic", 5 * 10**17),
        ("1200 wei", 1200),
        ("1200", 1200),
        (7, 7),
        ("10_000 AIC", 10**22),
        ("0.000000000000000001 AIC", 1),
    ],
)
def test_parse_amount_accepts_aic_and_wei(text, wei):
    assert parse_amount(text) == wei


@pytest.mark.parametrize("bad", ["-1 AIC", "one AIC", "0.5 wei", "1e3", True, -3, None, "0.0000000000000000001 AIC"])
def test_parse_amount_refuses_nonsense_with_a_sentence(bad):
    with pytest.raises(ValueError, match="amount|wei|negative"):
        parse_amount(bad)


def test_format_aic_trims_zeros():
    assert format_aic(10**18) == "1 AIC"
    assert format_aic(7_008_424_504_455_000) == "0.007008 AIC"
    assert format_aic(0) == "0 AIC"
    assert format_aic(1000) == "1000 wei"
