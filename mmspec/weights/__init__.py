"""Pretrained weights: read checkpoints safely (`checkpoint`), translate their names (`keymap`, from the
layouts components declare), and load them strictly with a report (`load`)."""

from mmspec.weights.load import load_weights

__all__ = ["load_weights"]
