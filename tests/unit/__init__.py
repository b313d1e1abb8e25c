"""Unit tests: one module or rule each, against naive twins, known answers and hypothesis-drawn inputs."""
