"""zipfhead's toy half: attention-only JAX transformers trained on the data families of :mod:`theory`.

For now it holds the ``zipfhead`` command line (:mod:`toy_models.cli`); the models, the training engine and the
mechanistic measures build on :mod:`theory`'s samplers and statistics.
"""
