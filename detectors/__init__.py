"""Detection catalogue: declarative detector metadata + pure numba kernels.

Never imports Faust. See ``detectors/base.py`` for how to write a detector.
"""
