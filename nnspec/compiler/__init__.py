"""Spec -> IR: graph resolution, shape inference, parameter counts, lint."""
