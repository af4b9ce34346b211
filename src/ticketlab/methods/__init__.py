"""Floor 2, the methods: algorithms that act on a model and an optimizer alone.

The IMP pruning step (`imp`), pruning at initialisation (`saliency`: SNIP, GraSP, SynFlow) and
dynamic sparse training (`sparse`: SET, SNFS, RigL, GMP, static). Nothing here trains, stores or
knows a domain.
"""
