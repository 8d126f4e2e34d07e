"""Price data for tests that need genai-prices' data to change (an update) while they run."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

from genai_prices import data_snapshot
from genai_prices.types import ClauseEquals, ModelInfo, ModelPrice, Provider


@contextmanager
def updated_gpt_4o_prices() -> Iterator[None]:
    """New genai-prices data in which OpenAI's only model is gpt-4o at $7 / $9 per 1M tokens.

    Installed as genai-prices' custom snapshot, as an auto-update installs it; the bundled data
    is back on exit.
    """
    custom = data_snapshot.DataSnapshot(
        providers=[
            Provider(
                id="openai",
                name="OpenAI",
                api_pattern=r"https://api\.openai\.com",
                models=[
                    ModelInfo(
                        id="gpt-4o",
                        match=ClauseEquals(equals="gpt-4o"),
                        prices=ModelPrice(input_mtok=Decimal(7), output_mtok=Decimal(9)),
                    )
                ],
            )
        ],
        from_auto_update=True,
    )
    data_snapshot.set_custom_snapshot(custom)
    try:
        yield
    finally:
        data_snapshot.set_custom_snapshot(None)
