"""modelsvc: calibrated Bayesian (MC-dropout) text classifier over a frozen pretrained encoder.

Pure Python + torch/transformers; never imports Django or the service. See docs/MODELSVC.md.
"""

__version__ = "0.1.0"
