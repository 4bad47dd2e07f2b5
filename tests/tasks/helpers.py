"""A tiny stand-in sequence model, so task tests need none of the real sequence families."""

from dataclasses import dataclass

from torch import Tensor, nn

from fieldguide.layers.sequence import check_sequence, pool_sequence
from fieldguide.models.base import SequenceModel
from fieldguide.models.registry import Entry


@dataclass(frozen=True)
class StandInConfig:
    in_channels: int = 1
    out_dim: int = 1
    pool: str = "none"
    causal: bool = True  # False: every step also sees the mean of the whole sequence


class StandIn(SequenceModel):
    """Per-step linear map, then the pool; causal unless `causal=False`."""

    def __init__(self, config: StandInConfig) -> None:
        super().__init__(config)
        self.head = nn.Linear(config.in_channels, config.out_dim)

    @property
    def invariants(self) -> frozenset[str]:
        # Like the RNN: declared causal only with per-step outputs.
        causal = self.config.causal and self.config.pool == "none"
        return frozenset({"causal"}) if causal else frozenset()

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        check_sequence(x, lengths, in_channels=self.config.in_channels, owner="stand-in")
        h = self.head(x)  # (B, T, out_dim)
        if not self.config.causal:  # every step sees the mean over the real steps
            h = h + pool_sequence(h, lengths, "mean")[:, None]
        return pool_sequence(h, lengths, self.config.pool)


def stand_in_entry(causal: bool = True) -> Entry:
    """A registry entry for the stand-in, for monkeypatching a task module's `get_entry`."""
    return Entry(name="stand-in", family="tests", config=StandInConfig(causal=causal), cls=StandIn)
