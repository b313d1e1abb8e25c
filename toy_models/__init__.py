"""zipfhead's toy half: attention-only JAX transformers trained on the data families of :mod:`theory`.

It holds the models (:mod:`toy_models.model`), the training engine (:mod:`toy_models.train`), the mechanistic
measures, the phase-diagram sweeps and their reports, and the ``zipfhead`` command line (:mod:`toy_models.cli`),
all built on :mod:`theory`'s samplers and statistics.
"""
