"""The empirical neural tangent kernel: exact and matrix-free, with its spectral measures."""

from ntkbook.ntk import feature_learning, matfree, measures, spectrum, subsample
from ntkbook.ntk.feature_learning import kernel_target_alignment, relative_kernel_change
from ntkbook.ntk.kernel import (
    METHODS,
    NTKFunction,
    empirical_ntk,
    layer_summary,
    ntk_diagonal,
    ntk_fn,
)
from ntkbook.ntk.linearize import linearize
from ntkbook.ntk.measures import KERNEL_MEASURES, kernel_measures, kernel_measures_stack
from ntkbook.ntk.position import (
    MinibatchSpectralPosition,
    SpectralPosition,
    spectral_position,
    spectral_position_minibatch,
)
from ntkbook.ntk.record import (
    FunctionRecorder,
    KernelRecorder,
    Schedule,
    Series,
    load_records,
    log_spaced_epochs,
)
from ntkbook.ntk.regime import (
    MIXED,
    REGIMES,
    Regime,
    SeedRegimes,
    agreed_regime,
    regime,
    seed_regimes,
)
from ntkbook.ntk.spectrum import (
    covariance_entropy,
    effective_rank,
    eigensystem,
    entropy,
    self_entropy,
    trace,
)
from ntkbook.ntk.subsample import (
    SubsampledMeasures,
    SubsampleRecorder,
    draw_subsets,
    subsampled_measures,
)

__all__ = [
    "METHODS",
    "NTKFunction",
    "empirical_ntk",
    "layer_summary",
    "ntk_diagonal",
    "ntk_fn",
    "matfree",
    "linearize",
    "spectrum",
    "measures",
    "KERNEL_MEASURES",
    "kernel_measures",
    "kernel_measures_stack",
    "SpectralPosition",
    "MinibatchSpectralPosition",
    "spectral_position",
    "spectral_position_minibatch",
    "KernelRecorder",
    "FunctionRecorder",
    "Schedule",
    "Series",
    "load_records",
    "log_spaced_epochs",
    "regime",
    "agreed_regime",
    "seed_regimes",
    "SeedRegimes",
    "Regime",
    "REGIMES",
    "MIXED",
    "eigensystem",
    "entropy",
    "trace",
    "effective_rank",
    "covariance_entropy",
    "self_entropy",
    "subsample",
    "feature_learning",
    "relative_kernel_change",
    "kernel_target_alignment",
    "SubsampledMeasures",
    "SubsampleRecorder",
    "draw_subsets",
    "subsampled_measures",
]
