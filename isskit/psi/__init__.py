"""The ISS mapping psi (Chen et al. 2022, Eqs. 4-6) and the check of its propositions.

* :mod:`~isskit.psi.mapping`: exact psi, the table psi_iss and its lookup k_hat;
* :mod:`~isskit.psi.verify`: Propositions 1 and 2 checked, not assumed.
"""

from isskit.psi.mapping import (
    MAPPINGS,
    PsiTable,
    psi_exact,
    psi_table,
    table_files,
)

__all__ = [
    "MAPPINGS",
    "PsiTable",
    "psi_exact",
    "psi_table",
    "table_files",
]
