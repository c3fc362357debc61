"""Shared pytest fixtures: simulated cases with known truth (see Testing/phantoms/simulate.py).

Cases are generated once and cached on disk (``templates.cache_dir()/phantoms``, keyed by the
config and the simulation code version), and once per test session in memory.

Use::

    def test_something(phantom_case):
        case = phantom_case("bilateral")     # any name of phantom.FIXTURES, or "demo"

or the ready-made ``bilateral_case`` / ``none_case`` fixtures.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def phantom_case():
    """Factory ``get_case(name) -> phantom.Case`` over the named phantom fixtures (cached)."""
    from phantoms import simulate as phantom

    cache = {}

    def get_case(name: str):
        if name not in cache:
            cache[name] = phantom.fixture(name)
        return cache[name]

    return get_case


@pytest.fixture(scope="session")
def bilateral_case(phantom_case):
    """The bilateral-band fixture (1.5 mm)."""
    return phantom_case("bilateral")


@pytest.fixture(scope="session")
def none_case(phantom_case):
    """The no-band fixture (1.5 mm): truth present, no iron."""
    return phantom_case("none")
