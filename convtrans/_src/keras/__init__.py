"""Keras objects: activations, initializers, regularizers, constraints and identifier resolution."""
