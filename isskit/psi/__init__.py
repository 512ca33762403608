"""The ISS mapping psi (Chen et al. 2022, Eqs. 4-6) and the check of its propositions.

* :mod:`~isskit.psi.mapping`: exact psi (and its bound over a grid cell);
* :mod:`~isskit.psi.table`: the table psi_iss, its lookup k_hat, its files and its cache;
* :mod:`~isskit.psi.verify`: Propositions 1 and 2 checked, not assumed.
"""

from isskit.psi.mapping import psi_exact
from isskit.psi.table import MAPPINGS, PsiTable, psi_table, table_files

__all__ = [
    "MAPPINGS",
    "PsiTable",
    "psi_exact",
    "psi_table",
    "table_files",
]
