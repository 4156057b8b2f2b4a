"""Propagation of prompted objects through a lazy stack with sam2's stock video predictor.

One concern a module, importing downward only: ``reading`` (frames prepared on demand),
``features`` (image features shared by objects), ``runtime`` (how sam2 runs here), ``states``
(one object's sam2 inference state), ``batching`` (one tracking step for the objects whose
memories lie on the same frames), ``tracking`` (a run's frames, in such steps), ``confidence``
(how far to trust each mask), ``planning`` (which frames a run visits), ``lineage``
(divisions), ``record`` (what an annotation saves), ``stream`` (what a run hands out, and
writing it into labels), ``session`` (prompts and memory kept between runs), ``warmup``.
"""
