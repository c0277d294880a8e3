"""Band-gap predictors, the autoencoder and the generator."""

from __future__ import annotations


def load_model(model=None, kind: str = "oracle"):
    """Load a band-gap model directory (``"default"``: the shipped model of ``kind``).

    See :func:`gapforge.models.registry.load_model`.
    """
    from gapforge.models.registry import load_model as _load

    return _load(model, kind=kind)


__all__ = ["load_model"]
