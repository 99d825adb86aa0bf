"""The one error type of jaxcls.weights."""


class WeightsError(ValueError):
    """A weight file or a conversion was refused.

    Raised for unreadable, truncated or corrupt files, pickles that ask for anything beyond
    tensor-rebuilding globals, non-finite weights, and name maps that leave source tensors unused or
    target parameters unfilled. The message names the file, tensor, global or parameters involved.
    """
