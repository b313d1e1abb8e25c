"""Closed form of reduced model v2's transition under Adam (:mod:`theory.reduced_v2`): the item gain's collapse,
its rebuild by memorisation, and the circuit's noise-limited escape.

Derived and asserted in ``proofs_notebooks/02_induction_reduced_model.py``, section 12; compared with v2's
integration and with the stored toys in ``tests/unit/test_closed_form_v2.py``. Symbols as in
:mod:`theory.distributions`; flow time t as in :mod:`theory.reduced`; lambda the leak, rho the in-weights clock,
sigma the spread and n the batch (:class:`theory.reduced_v2.ParamsV2`); s = 1 / (1 + eps^2); cap = kappa D L s the
capacity.

Three stages, each in the regime the integration shows (notebook 02, section 12):

1. **Collapse.** At e = 1 the leak's gradient on the item gain, 2 lambda H, is several times Adam's noise
   1 / sqrt(n): e falls at unit speed and reaches ~0 at t = 1. Meanwhile the read-out gains w1 = k / 2 (below).
2. **Rebuild by memorisation.** Both e and the read-outs are now noise-limited (drift = sqrt(n) x gradient). A class
   of probability p_k has read-out w_k with dw_k/dt = rho H sqrt(n) (sqrt(p_k) e - 2 e^2 W / cap), H = E[1 - P*]
   the loss's pull on the correct label, and w_k = sqrt(p_k) W while the interference is small, so the
   distribution enters through pi = sum_k p_k^(3/2), as K_eff = pi^-2 uniform classes (exact for uniform classes).
   In uniform terms (w = W / sqrt(K_eff)) the item gain relaxes fast to the balance of memorisation against the
   leak and the interference, e*(w) = w / (2 (lambda + beta w^2)), beta = K_eff / cap, and then
       dw/dt = k w lambda / (2 (lambda + beta w^2)^2),   k = rho H sqrt(n / K_eff),
   which is separable: k (t - 1) = 2 lambda ln(w / w1) + 2 beta (w^2 - w1^2) + beta^2 (w^4 - w1^4) / (2 lambda).
   Along it, e*^2 dt = w dw / (2 k lambda): the item gain's integral is explicit, int e*^2 dt = (w^2 - w1^2) /
   (4 k lambda).
3. **The circuit's escape.** a = b grows noise-limited at rate A = s e^2 kappa_x sqrt(n / sigma) (notebook 02,
   section 11), kappa_x = E[dl/dx] / sqrt(E[(dl/dx)^2]) over the training cases at the saddle (1 for bursty
   uniform data, ~sqrt(p_B) otherwise), so ln(a / a0) = Lambda(w) = s kappa_x sqrt(n / sigma) (w^2 - w1^2) /
   (4 k lambda). The transition comes at the first w where either
   * the match x = s a^2 e*^2 reaches the half-way match x_half (:func:`theory.closed_form.match_half`), or
   * the circuit's pull on the item gain, 2 s a^2 e D_x c (D_x = phi B (N - B) / N^2 the bursty drive on the
     match per unit copy strength, phi the bursty fraction, the copy c ~ t in Adam's sign regime), overtakes the
     leak's and the interference's pull 2 e H (lambda + beta w^2): e and a then run away together.

What follows from it: the escape slows as K_eff grows (k ~ K^-1/2, the interference caps e* at sqrt(cap / (lambda
K_eff)) / 4): at the demo's constants x3.8 from K = 1024 to 8192 (p_B = 1), against the toys' x2.2 and the
integration's x2.3; and as K -> infinity it keeps growing ever more slowly, because the copy strength (c ~ t) alone
eventually lets the circuit's pull on e beat the leak (measured in steps: 2126, 5418, 11693, 15550 at K = 2^14,
2^16, 2^18, 2^20, against the integration's 1015, 1866, 4120, 13984). With nothing learnable in weights (p_C = 1, or
labels redrawn per sequence) k = 0 and the closed form has no transition (the integration forms a late head from e's
exponentially small remainder, at step 4099 for p_C = 1, K = 16384: past the toys' 3000, where they formed none). B
cancels except through H, D_x and x_half; p_B enters through kappa_x ~ sqrt(p_B) and D_x. Not in the closed form
(the integration carries them): memorisation taking the loss away (so the in-weights phase at the small-K edge and
at alpha >= 1.25, and the window's fast edge), weight decay, and SGD.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq

from zipfhead.theory._reduced_v2_flow import CBIN, CJ, CM, CMM, CN, CNO, CR, W
from zipfhead.theory._reduced_v2_kernel import case_terms
from zipfhead.theory.closed_form import match_half
from zipfhead.theory.distributions import ClassificationTask, Zipf
from zipfhead.theory.reduced_v2 import ParamsV2, cases_v2

__all__ = ["EscapeV2", "effective_classes", "escape_v2", "saddle_statistics"]

#: the copy strength at which the saddle statistics are read: the c -> 0 limit (dl/dx is proportional to c at
#: x = 0, so kappa_x does not depend on it; H = E[1 - P*] is then E[1 - 1 / L] over the known classes)
C_SADDLE = 1e-6
#: flow time of the collapse (e from 1 to ~0 at Adam's unit speed), and the read-out it leaves, w1 = k x this / 2
COLLAPSE_TIME = 1.0


@dataclass(frozen=True)
class EscapeV2:
    """v2's closed-form transition for one distribution.

    Attributes:
        time: flow time of the transition (inf when the closed form has none).
        trigger: ``match`` (x reached x_half), ``feedback`` (the circuit's pull on e overtook the leak's), or
            ``none``.
        read_out: w at the transition (per class, in uniform-equivalent units); gain: e*(w) there.
        rate: k, the read-out's growth per unit item gain (flow time^-1); beta: K_eff / cap.
        H: E[1 - P*] over the known classes at the saddle; kappa_x: E[dl/dx] / RMS(dl/dx) over all training cases.
        K_eff: (sum_k p_k^(3/2))^-2, the uniform-equivalent number of classes.
    """

    time: float
    trigger: str
    read_out: float
    gain: float
    rate: float
    beta: float
    H: float
    kappa_x: float
    K_eff: float


def effective_classes(task: ClassificationTask) -> float:
    """K_eff = (sum_k p_k^(3/2))^-2 of the task's Zipf law: K for uniform classes, fewer as alpha grows."""
    p = Zipf(task.K, task.alpha, task.q).probs()
    return float(np.sum(p**1.5) ** -2)


def saddle_statistics(task: ClassificationTask, init: float) -> tuple[float, float]:
    """(H, kappa_x) of the training cases at the saddle a = b = init, c -> 0, e = 1, nothing memorised.

    H = E[dl/dq] over the cases whose class has a read-out (dl/dq = -dl/dz* = 1 - P*), the pull that grows the
    read-outs; kappa_x = -E[dl/dx] / sqrt(E[(dl/dx)^2]) over every case, the circuit's signal-to-noise ratio."""
    cs = cases_v2(task)
    known = mass = mean_dx = mean_dx2 = 0.0
    for row in cs.train:
        t = case_terms(
            init, init, C_SADDLE, 1.0, 0.0, 0.0, cs.s, row[CM], row[CJ], row[CN], row[CR], row[CNO], row[CMM]
        )
        if row[CBIN] >= 0:
            known += row[W] * t[6]
            mass += row[W]
        mean_dx += row[W] * t[7]
        mean_dx2 += row[W] * t[7] ** 2
    H = known / mass if mass > 0 else 0.0
    return H, (-mean_dx / math.sqrt(mean_dx2) if mean_dx2 > 0 else 0.0)


def escape_v2(task: ClassificationTask, params: ParamsV2) -> EscapeV2:
    """The closed-form transition of v2 under Adam (see the module docstring), in flow time.

    ``params`` must be Adam's (``optimizer='adam'``); weight decay is ignored (the closed form is for none)."""
    if not isinstance(task, ClassificationTask):
        raise ValueError(f"task = {task!r} is not allowed: task must be a ClassificationTask")
    if params.optimizer != "adam":
        raise ValueError(f"params.optimizer = {params.optimizer!r} is not allowed: the closed form is Adam's (adam)")
    H, kappa_x = saddle_statistics(task, params.init)
    s = 1.0 / (1.0 + task.eps**2)
    K_eff = effective_classes(task)
    learnable = (1.0 - task.p_C) if task.label_map == "fixed" else 0.0
    beta = K_eff / (params.kappa * params.D * task.L * s)
    k = learnable * params.iw_speed * H * math.sqrt(params.batch / K_eff)
    lam = params.leak
    none = EscapeV2(math.inf, "none", math.nan, math.nan, k, beta, H, kappa_x, K_eff)
    if k <= 0.0 or lam <= 0.0 or kappa_x <= 0.0 or task.N <= task.B:
        return none
    w1 = 0.5 * k * COLLAPSE_TIME
    gain = s * kappa_x * math.sqrt(params.batch / params.spread)
    bursty = task.p_C + (1.0 - task.p_C) * task.p_B
    drive = bursty * task.B * (task.N - task.B) / task.N**2
    need = math.log(match_half(task) / (s * params.init**2))

    def gain_at(w: float) -> float:  # e*(w), the item gain's balance of memorisation against leak and interference
        return w / (2.0 * (lam + beta * w * w))

    def time(w: float) -> float:
        quartic = beta**2 * (w**4 - w1**4) / (2.0 * lam)
        return COLLAPSE_TIME + (2.0 * lam * math.log(w / w1) + 2.0 * beta * (w * w - w1 * w1) + quartic) / k

    def gaps(w: float) -> tuple[float, float]:
        growth = 2.0 * gain * (w * w - w1 * w1) / (4.0 * k * lam)  # 2 ln(a / a0)
        match = growth + 2.0 * math.log(gain_at(w)) - need
        if drive <= 0.0 or H <= 0.0:  # no bursty drive on the match (p_B = p_C = 0): the feedback never fires
            return match, -math.inf
        pull = growth + math.log(s * params.init**2 * time(w) * drive) - math.log(H * (lam + beta * w * w))
        return match, pull

    def gap(w: float) -> float:
        return max(gaps(w))

    w = w1
    if gap(w1) < 0.0:
        hi = 2.0 * w1
        while gap(hi) < 0.0:
            hi *= 2.0
            if hi > 1e6:
                return none
        w = brentq(gap, w1, hi, xtol=1e-12 * hi, rtol=1e-12)
    match, pull = gaps(w)
    return EscapeV2(time(w), "match" if match >= pull else "feedback", w, gain_at(w), k, beta, H, kappa_x, K_eff)
