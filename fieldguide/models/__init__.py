"""Model families, one module each, registered by name."""

from fieldguide.models.registry import create_model, get_entry, list_models, register

__all__ = ["create_model", "get_entry", "list_models", "register"]
