"""isskit: input-specific sampling for randomized-smoothing certification.

Sample a base classifier's predictions on noisy copies of each input once
(:mod:`isskit.sampling`, stored by :mod:`isskit.store`), then replay any
certification policy offline (:mod:`isskit.replay`). The ISS mapping of Chen et
al. (AAAI 2022) lives in :mod:`isskit.psi`, the Clopper-Pearson statistics in
:mod:`isskit.stats`.

Importing the package is cheap: submodules are imported by the user, never here,
so that ``isskit replay`` does not pay for torch.
"""

from isskit._extras import MissingExtraError, require_extra
from isskit._version import __version__

__all__ = ["MissingExtraError", "__version__", "require_extra"]
