"""Which BLAST-Lite cell model stands for which chemistry, and the numpy shim it needs.

BLAST-Lite 1.1 still calls ``np.trapz``, which numpy 2.x removed. Rather than patch numpy for
the whole process, each BLAST module gets a proxy of numpy that adds ``trapz`` back.
"""

from __future__ import annotations

import sys
import types
from enum import StrEnum

import numpy as np

import blast.models as _blast_models


class Chemistry(StrEnum):
    NMC = "NMC"
    LFP = "LFP"
    NCA = "NCA"


# One representative cell model per chemistry. NMC: the model BLAST fits to LG MJ1 (NMC811,
# graphite-silicon) cells from the EU EVERLASTING project; LFP: a large-format >250 Ah
# prismatic cell; NCA: Panasonic NCR18650B-type cells. Each has separate calendar and
# cycling states, so the split below can be checked against the model's own bookkeeping.
MODEL_FOR: dict[Chemistry, str] = {
    Chemistry.NMC: "Nmc811_GrSi_LGMJ1_4Ah_Battery",
    Chemistry.LFP: "Lfp_Gr_250AhPrismatic",
    Chemistry.NCA: "Nca_Gr_Panasonic3Ah_Battery",
}


class _NumpyWithTrapz(types.ModuleType):
    trapz = staticmethod(np.trapezoid)

    def __getattr__(self, name: str) -> object:
        return getattr(np, name)


def _install_shim() -> None:
    if hasattr(np, "trapz"):
        return
    proxy = _NumpyWithTrapz("numpy")
    for name, mod in list(sys.modules.items()):
        if name.startswith("blast") and getattr(mod, "np", None) is np:
            mod.np = proxy  # type: ignore[attr-defined]


_install_shim()


def new_model(chemistry: Chemistry | str) -> _blast_models.BatteryDegradationModel:
    """A fresh (unaged) BLAST-Lite model instance for the chemistry."""
    return getattr(_blast_models, MODEL_FOR[Chemistry(chemistry)])()
