"""Model registry and loading: the only package that imports torch and diffusers.

Also home of the embedded default model (`models/shapes`).
"""
