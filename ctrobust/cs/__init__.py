"""Raj et al. Sec. 4.1-4.3: compressive sensing on CT patches with a Gaussian and a DCT-submatrix
measurement matrix; see docs/cs_conditioning.md."""

from ctrobust.cs.operators import MatrixOperator, dct_rows_cols, gaussian
from ctrobust.cs.study import CSStudy, run_cs_study

__all__ = ["CSStudy", "MatrixOperator", "dct_rows_cols", "gaussian", "run_cs_study"]
