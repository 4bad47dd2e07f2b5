"""The verbs of fieldguide as Python functions; the CLI is a thin shell over them.

>>> from fieldguide.api import train
>>> result = train("resnet-tiny", "digits")
"""

from fieldguide.api.run import RunResult, train

__all__ = ["RunResult", "train"]
