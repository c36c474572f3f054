"""Easel's embedded default model: a small Stable-Diffusion-shaped model of the shapes world."""
