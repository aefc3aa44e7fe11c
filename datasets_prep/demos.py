"""The demonstration queries of a value composition, from `picaco.values` (kept out of the pure build)."""

from __future__ import annotations

from .errors import DataError


def demonstration_queries(composition: str) -> list[str]:
    """Queries of the composition's demonstrations, to be kept out of X and the test set."""
    try:
        from picaco.values import load_composition
    except ImportError as err:
        raise DataError(f"picaco.values.load_composition is not available ({err}); cannot exclude demonstrations") from err
    comp = load_composition(composition)
    return [d.query for d in comp.demonstrations]
