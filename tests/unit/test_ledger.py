import pytest

from runtime.ledger import compute_amount, per_call_amount


@pytest.mark.parametrize(
    ("price", "seconds", "wei"),
    [
        (10**12, 1.0, 10**12),
        (10**12, 0.5, 5 * 10**11),
        (3, 0.5, 2),
        (1, 0.4999, 0),
        (10**12, 0.0, 0),
    ],
)
def test_compute_amount_rounds_half_up_to_whole_wei(price, seconds, wei):
    assert compute_amount(price, seconds) == wei


def test_per_call_amount_is_exact_for_prices_in_multiples_of_1000():
    assert per_call_amount(10**15) == 10**12
    assert per_call_amount(10**15, 64) == 64 * 10**12
