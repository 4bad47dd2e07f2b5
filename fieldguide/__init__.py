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
__all__ = ["create_model", "diagram", "get_entry", "list_models", "load_run", "__version__"]


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
