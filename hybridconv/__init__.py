"""hybridconv: CNNs with hand-crafted, random, learned, parametric or mixed conv kernels."""

__version__ = "0.1.0"
