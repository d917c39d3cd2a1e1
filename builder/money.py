"""AIC amounts: parsing user-written prices ("0.5 AIC", "1200 wei") into integer wei, and formatting."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

WEI_PER_AIC = 10**18
_AMOUNT = re.compile(r"^\s*([0-9][0-9_]*(?:\.[0-9]+)?)\s*(aic|wei)?\s*$", re.IGNORECASE)


def parse_amount(value: object) -> int:
    """Return the amount in wei for an int (wei) or a string like '0.5 AIC' / '1200 wei'."""
    if isinstance(value, bool):
        raise ValueError(f"expected an amount like '0.5 AIC' or an integer number of wei, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"an amount cannot be negative, got {value}")
        return value
    if isinstance(value, str):
        m = _AMOUNT.match(value)
        if m:
            number, unit = m.group(1).replace("_", ""), (m.group(2) or "wei").lower()
            try:
                dec = Decimal(number)
            except InvalidOperation:
                dec = None
            if dec is not None:
                wei = dec * WEI_PER_AIC if unit == "aic" else dec
                if wei != wei.to_integral_value():
                    raise ValueError(f"{value!r} is smaller than 1 wei or not a whole number of wei")
                return int(wei)
    raise ValueError(f"expected an amount like '0.5 AIC' or an integer number of wei, got {value!r}")


def format_aic(wei: int) -> str:
    """Format wei as a human-readable AIC amount (up to 6 decimals, trailing zeros trimmed); tiny amounts in wei."""
    if 0 < wei < 10**12:  # below one micro-AIC the AIC figure would round to 0
        return f"{wei} wei"
    dec = (Decimal(wei) / WEI_PER_AIC).quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP)
    text = format(dec, "f").rstrip("0").rstrip(".")
    return f"{text} AIC"


__all__ = ["WEI_PER_AIC", "format_aic", "parse_amount"]
