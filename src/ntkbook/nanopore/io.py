"""Reading and writing current traces: Axon Binary Format (ABF, via ``pyabf``) and ``.npz``.

A trace is one channel of current in pA (:class:`~ntkbook.nanopore.simulate.Trace`). Multi-sweep
ABF files are concatenated sweep after sweep (gap-free recordings are one sweep). The ``.npz``
format holds ``current`` (float32, pA), ``sampling_rate`` (Hz), ``synthetic`` and
``description``. Writers are atomic; readers raise ``ValueError`` naming the file for anything
that is not a complete, finite, non-empty trace.
"""

from __future__ import annotations

import io
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from ntkbook.atomic import write_bytes_atomic
from ntkbook.nanopore.simulate import Trace

__all__ = ["read_abf", "write_abf", "read_npz", "write_npz", "read_trace"]


def _check_trace_array(current: np.ndarray, path: Path) -> np.ndarray:
    if current.size == 0:
        raise ValueError(f"{path}: the trace is empty (0 samples)")
    bad = np.flatnonzero(~np.isfinite(current))
    if bad.size:
        raise ValueError(
            f"{path}: {bad.size} NaN/inf sample(s) in the trace, first at index {bad[0]}"
        )
    return current


def read_abf(path: str | os.PathLike[str], channel: int = 0) -> Trace:
    """Read channel ``channel`` of an ABF1/ABF2 file as a :class:`Trace` (all sweeps joined)."""
    import pyabf

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no ABF file at {path}")
    try:
        abf = pyabf.ABF(str(path))
        if not 0 <= channel < abf.channelCount:
            raise ValueError(f"channel {channel} not in file with {abf.channelCount} channel(s)")
        sweeps = []
        for sweep in range(abf.sweepCount):
            abf.setSweep(sweep, channel=channel)
            sweeps.append(np.array(abf.sweepY, dtype=np.float32))
        expected = abf.sweepCount * abf.sweepPointCount
        sampling_rate = float(abf.dataRate)
    except ValueError as error:
        if str(path) in str(error):
            raise
        raise ValueError(f"{path}: not a readable ABF file ({error})") from error
    except Exception as error:  # noqa: BLE001 - pyabf raises many types on corrupt input
        raise ValueError(
            f"{path}: not a readable ABF file ({type(error).__name__}: {error})"
        ) from error
    current = np.concatenate(sweeps) if sweeps else np.zeros(0, np.float32)
    if current.size != expected:
        raise ValueError(f"{path}: truncated ABF file, {current.size} of {expected} samples")
    # pyabf reads the data section through a memory map that stops at the end of the file; a
    # file cut short shows up as fewer bytes than the header promises.
    data_bytes = path.stat().st_size - abf.dataByteStart
    if data_bytes < expected * abf.dataPointByteSize * abf.channelCount:
        raise ValueError(
            f"{path}: truncated ABF file, {data_bytes} data bytes for {expected} samples "
            f"× {abf.channelCount} channel(s) × {abf.dataPointByteSize} bytes"
        )
    _check_trace_array(current, path)
    return Trace(current=current, sampling_rate=sampling_rate, description=f"ABF file {path.name}")


def write_abf(path: str | os.PathLike[str], trace: Trace) -> Path:
    """Write ``trace`` as a one-sweep ABF1 file (16-bit samples, pA; ``pyabf.abfWriter``).

    ABF1 stores 16-bit integers: pyabf picks the finest power-of-ten scale that holds the
    largest |current|, e.g. 0.03 pA steps for currents up to 1 nA.
    """
    from pyabf.abfWriter import writeABF1

    path = Path(path)
    current = np.asarray(trace.current, dtype=np.float32)
    _check_trace_array(current, path)
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp) / "trace.abf"
        writeABF1(current[None, :], str(scratch), float(trace.sampling_rate), units="pA")
        data = scratch.read_bytes()
    return write_bytes_atomic(path, data)


def write_npz(path: str | os.PathLike[str], trace: Trace) -> Path:
    """Write ``trace`` as an uncompressed ``.npz`` (atomically)."""
    buffer = io.BytesIO()
    np.savez(
        buffer,
        current=np.asarray(trace.current, dtype=np.float32),
        sampling_rate=np.float64(trace.sampling_rate),
        synthetic=np.bool_(trace.synthetic),
        description=np.str_(trace.description),
    )
    return write_bytes_atomic(path, buffer.getvalue())


def read_npz(path: str | os.PathLike[str]) -> Trace:
    """Read a trace written by :func:`write_npz`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no trace file at {path}")
    required = {"current", "sampling_rate"}
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = required - set(data.files)
            if missing:
                raise ValueError(f"{path}: missing array(s) {sorted(missing)}")
            current = np.asarray(data["current"])
            sampling_rate = float(data["sampling_rate"])
            synthetic = bool(data["synthetic"]) if "synthetic" in data.files else False
            description = str(data["description"]) if "description" in data.files else ""
    except ValueError as error:
        if str(path) in str(error):
            raise
        raise ValueError(f"{path}: not a readable trace file ({error})") from error
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as error:
        raise ValueError(
            f"{path}: not a readable trace file ({type(error).__name__}: {error})"
        ) from error
    if current.ndim != 1 or not np.issubdtype(current.dtype, np.floating):
        raise ValueError(
            f"{path}: current must be a 1-D float array, got {current.dtype} {current.shape}"
        )
    _check_trace_array(current, path)
    return Trace(current.astype(np.float32), sampling_rate, synthetic, description)


def read_trace(path: str | os.PathLike[str]) -> Trace:
    """Read ``.abf`` or ``.npz`` by extension."""
    suffix = Path(path).suffix.lower()
    if suffix == ".abf":
        return read_abf(path)
    if suffix == ".npz":
        return read_npz(path)
    raise ValueError(f"{path}: unknown trace format {suffix!r}; expected .abf or .npz")
