"""The lottery-ticket experiment: the IMP trunk (`trunk`), its controls (`controls`), the
run graph (`runner`) and linear-mode-connectivity instability (`instability`).

Frankle & Carbin 2019 (LTH) §2; Frankle et al. 2020 (linear mode connectivity) §3.
"""
