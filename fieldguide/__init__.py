"""fieldguide: the neural-network field guide as software.

Every architecture family of the guide as a registered PyTorch module, a trainer that trains
any of them, and the guide's advice as code. Importing this package does not import torch;
the model families are imported on first use.

    >>> import fieldguide
    >>> model = fieldguide.create_model("resnet-tiny", num_classes=10)
    >>> from fieldguide.api import train
"""

from fieldguide.models.registry import create_model, get_entry, list_models

__version__ = "0.1.0"
__all__ = ["create_model", "get_entry", "list_models", "__version__"]
