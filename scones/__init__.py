"""scones: a local-first ML workflow for Scones Unlimited."""

__version__ = "0.1.0"
