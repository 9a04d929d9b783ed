"""Chapters' sweeps as registered experiments: how a chapter's parameters become its points.

Each module here registers its chapter's experiments (:func:`ntkbook.store.experiment`) and
defines ``grid(parameters) -> list[ntkbook.sweep.Grid]``, which the chapter's notebook and
``ntkbook sweep CHAPTER`` both call, so that both compute (and find) the same points.
"""
