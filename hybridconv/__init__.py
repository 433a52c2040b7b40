"""hybridconv: CNNs whose convolution kernels are hand-crafted, random, learned, parametric or mixed."""

__version__ = "0.1.0"
