"""Network search spaces and hardware spaces, registered by name."""

from .base import SPACES, SearchSpace, Slot, SuperNet
from . import chain as _chain  # noqa: F401  (registers "chain")
from . import nb201 as _nb201  # noqa: F401  (registers "nb201")

__all__ = ["SPACES", "SearchSpace", "Slot", "SuperNet", "create_space"]


def create_space(name: str, input_shape, num_classes: int, **options) -> SearchSpace:
    """A registered space for this input shape; unknown names list the valid ones."""
    from ..errors import ConfigError

    factory = SPACES.get(name)
    try:
        return factory(input_shape, num_classes, **options)
    except TypeError as e:
        raise ConfigError(f"space {name!r}: bad option ({e})") from None
