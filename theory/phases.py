"""The phase vocabulary shared by theory and toys: the names, which of them count as a formed head, how a phase
follows from what formed, and one colour and one letter per phase for every plot and table."""

from __future__ import annotations

__all__ = ["COLOURS", "DIVERGED", "FORMED", "LETTERS", "PHASES", "phase_from"]

#: the phases a distribution can land in, in the order of the theory's phase grids (their integer codes)
PHASES = ("icl", "iwl", "both", "neither", "transient")
#: the phases in which the induction head formed (a transition step is measured, predicted and scored only there)
FORMED = ("icl", "both", "transient")
#: the label of a toy whose loss diverged: neither calibrated on nor scored
DIVERGED = "diverged"
#: one colour per phase (and for a diverged toy), the same in the theory's phase grids and the sweep's report
COLOURS = {
    "icl": "#1f77b4",
    "iwl": "#d62728",
    "both": "#9467bd",
    "neither": "#999999",
    "transient": "#ff7f0e",
    DIVERGED: "#000000",
}
#: one letter per phase, for the report's phase tables
LETTERS = {"icl": "I", "iwl": "W", "both": "B", "neither": "N", "transient": "T", DIVERGED: "D"}


def phase_from(icl_formed: bool, iwl_formed: bool, icl_faded: bool) -> str:
    """The phase label shared by theory and toys: icl, iwl, both, neither, or transient (formed, then faded)."""
    if icl_formed and icl_faded:
        return "transient"
    if icl_formed and iwl_formed:
        return "both"
    if icl_formed:
        return "icl"
    if iwl_formed:
        return "iwl"
    return "neither"
