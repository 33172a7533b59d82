"""Replay: measure label efficiency by running the service's own loop against gold labels.

``loop`` drives a project through lease -> label -> retrain with a simulated annotator;
``curves`` turns the per-round records into mean/std curves, a PNG and the headline figures.
"""
