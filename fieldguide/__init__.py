"""fieldguide: the neural-network field guide as software.

Every architecture family of the guide as a registered PyTorch module, a trainer that trains
any of them, and the guide's advice as code. Importing this package does not import torch;
the model families are imported on first use.

    >>> import fieldguide
    >>> model = fieldguide.create_model("resnet-tiny", out_dim=10)
    >>> from fieldguide.api import train
"""

from fieldguide.models.registry import create_model, get_entry, list_models

__version__ = "0.1.0"
__all__ = [
    "create_model",
    "diagram",
    "export_weights",
    "get_entry",
    "list_models",
    "load_run",
    "load_weights",
    "__version__",
]


def diagram(model, example_input=None, **options):  # noqa: ANN001, ANN201 (see api.diagram)
    """A model (an nn.Module or a registered name) as a Mermaid diagram traced from its code.

    Imports torch on first use; see `fieldguide.api.diagram.diagram` for the options.
    """
    from fieldguide.api.diagram import diagram as _diagram

    return _diagram(model, example_input, **options)


def load_run(run_dir):  # noqa: ANN001, ANN201 (see api.predict)
    """A finished run folder as an object with `.model`, `.preprocessing` and `.predict(path)`.

    Imports torch on first use; see `fieldguide.api.predict.load_run`.
    """
    from fieldguide.api.predict import load_run as _load_run

    return _load_run(run_dir)


def load_weights(model, path_or_state_dict, source, strict=True):  # noqa: ANN001, ANN201 (interop)
    """Copy a torchvision, timm or Hugging Face state dict into `model` through its key map.

    Reads a dict of tensors or a .safetensors file, never a pickle; returns a report. Imports
    torch on first use; see `fieldguide.interop.load_weights` (not `train.weights`, which
    reads this library's own run files).
    """
    from fieldguide.interop import load_weights as _load_weights

    return _load_weights(model, path_or_state_dict, source=source, strict=strict)


def export_weights(model, target):  # noqa: ANN001, ANN201 (see interop.export_weights)
    """`model`'s weights as a state dict in torchvision's, timm's or Hugging Face's layout.

    Imports torch on first use; see `fieldguide.interop.export_weights`.
    """
    from fieldguide.interop import export_weights as _export_weights

    return _export_weights(model, target=target)
