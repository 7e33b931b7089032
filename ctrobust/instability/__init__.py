"""Antun et al.'s instability test: stable classical references (TV, SIRT), small structural
changes (card symbols, "CAN U SEE IT") with a recovery score, and the more-views sweep."""

from .detail_score import DetailResult, box_correlation, box_psnr, evaluate_detail, recovery_score
from .details import (
    SUITS,
    DetailInsertion,
    auto_center,
    insert_detail,
    mask_bbox,
    place,
    render_stamp,
    render_symbols,
    render_text,
)
from .finite_diff import divergence, gradient, total_variation
from .more_views import DEFAULT_VIEWS, more_views_sweep
from .phantom import shepp_logan_head
from .sirt import SIRTInfo, UnrolledSIRT, sirt_reconstruct, sirt_weights, unrolled_sirt
from .tv import TVInfo, default_step_ratio, tv_objective, tv_reconstruct
from .tv_weight import choose_tv_weight

__all__ = [
    "DEFAULT_VIEWS",
    "SUITS",
    "DetailInsertion",
    "DetailResult",
    "SIRTInfo",
    "TVInfo",
    "UnrolledSIRT",
    "auto_center",
    "box_correlation",
    "box_psnr",
    "choose_tv_weight",
    "default_step_ratio",
    "divergence",
    "evaluate_detail",
    "gradient",
    "insert_detail",
    "mask_bbox",
    "more_views_sweep",
    "place",
    "recovery_score",
    "render_stamp",
    "render_symbols",
    "render_text",
    "shepp_logan_head",
    "sirt_reconstruct",
    "sirt_weights",
    "tv_objective",
    "tv_reconstruct",
    "unrolled_sirt",
    "total_variation",
]
