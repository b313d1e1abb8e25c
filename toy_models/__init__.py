"""zipfhead's toy half (``zipfhead.toy_models``): attention-only JAX transformers trained on the data families of
:mod:`theory`.

It holds the configs (:mod:`toy_models.config`, JAX-free), the models (:mod:`toy_models.model`), the training
engine (:mod:`toy_models.train`), the mechanistic measures, and the phase-diagram sweeps and their reports, all
built on :mod:`theory`'s samplers and statistics. The ``zipfhead`` command line over it is :mod:`zipfhead.cli`.
"""
