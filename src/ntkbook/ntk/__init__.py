"""The empirical neural tangent kernel: exact and matrix-free, with its spectral measures."""

from ntkbook.ntk import feature_learning, matfree, spectrum, subsample
from ntkbook.ntk.feature_learning import kernel_target_alignment, relative_kernel_change
from ntkbook.ntk.kernel import (
    METHODS,
    NTKFunction,
    empirical_ntk,
    layer_summary,
    ntk_diagonal,
    ntk_fn,
)
from ntkbook.ntk.position import (
    MinibatchSpectralPosition,
    SpectralPosition,
    spectral_position,
    spectral_position_minibatch,
)
from ntkbook.ntk.record import KernelRecorder, load_records
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
    "spectrum",
    "SpectralPosition",
    "MinibatchSpectralPosition",
    "spectral_position",
    "spectral_position_minibatch",
    "KernelRecorder",
    "load_records",
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
