"""Hypothesis profiles of the webhook fuzzer, chosen by `PAPO_FUZZ_PROFILE`: `ci` (the default, 1,000 bodies,
the same ones every run) or `deep` (`make fuzz`: 10,000 fresh bodies a run)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=1_000,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    print_blob=True,
)
settings.register_profile("deep", parent=settings.get_profile("ci"), max_examples=10_000, derandomize=False)

PROFILE = settings.get_profile(os.environ.get("PAPO_FUZZ_PROFILE", "ci"))
"""Applied per test (`@settings(PROFILE)`), so other hypothesis tests in the same run keep their own."""
