"""Reading and writing current traces: Axon Binary Format (ABF, via ``pyabf``) and ``.npz``.

A trace is one channel of current in pA (:class:`~ntkbook.nanopore.trace.Trace`). An ABF file
is read one channel and one sweep at a time (gap-free recordings are one sweep); units are
checked and converted to pA. The ``.npz``
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
from ntkbook.nanopore.trace import Trace

__all__ = ["CURRENT_UNITS_TO_PA", "read_abf", "write_abf", "read_npz", "write_npz", "read_trace"]


def _check_trace_array(current: np.ndarray, path: Path) -> np.ndarray:
    if current.size == 0:
        raise ValueError(f"{path}: the trace is empty (0 samples)")
    bad = np.flatnonzero(~np.isfinite(current))
    if bad.size:
        raise ValueError(
            f"{path}: {bad.size} NaN/inf sample(s) in the trace, first at index {bad[0]}"
        )
    return current


CURRENT_UNITS_TO_PA = {"pA": 1.0, "nA": 1e3, "A": 1e12}
"""Channel units ``read_abf`` accepts, with the factor that converts each to pA."""

_MODES = {1: "event-driven (variable length)", 2: "oscilloscope", 3: "gap-free", 5: "episodic"}


def read_abf(path: str | os.PathLike[str], channel: int = 0, sweep: int | None = None) -> Trace:
    """Read one channel of an ABF1/ABF2 file as a :class:`Trace` in pA.

    The channel's unit must be a current: pA is kept, nA and A are converted to pA, anything
    else (mV, V, dB, °C, ...) is an error naming the unit and the channel. A gap-free file (or
    any file with one sweep) is read whole; a file with several sweeps (episodic or
    event-driven recordings, whose sweeps are separate stretches of time) needs ``sweep=k``,
    and sweeps may differ in length. A file that pyabf cannot parse, or whose data section is
    shorter than its header says, is an error naming the file."""
    import pyabf

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no ABF file at {path}")
    try:
        abf = pyabf.ABF(str(path))
        channels, sweeps = int(abf.channelCount), int(abf.sweepCount)
        mode = int(getattr(abf, "nOperationMode", 3))
    except Exception as error:  # noqa: BLE001 - pyabf raises many types on corrupt input
        raise ValueError(
            f"{path}: not a readable ABF file, truncated or corrupt "
            f"({type(error).__name__}: {error})"
        ) from error
    if not (isinstance(channel, int) and 0 <= channel < channels):
        raise ValueError(f"{path}: channel {channel!r} not in a file with {channels} channel(s)")
    if sweep is None and sweeps > 1:
        raise ValueError(
            f"{path}: {sweeps} sweeps ({_MODES.get(mode, f'operation mode {mode}')} "
            "recording); sweeps are separate stretches of time and are not joined: read one "
            "with read_abf(path, sweep=k), k in [0, "
            f"{sweeps - 1}], e.g. [read_abf(path, sweep=k) for k in range({sweeps})]"
        )
    sweep = 0 if sweep is None else sweep
    if not (isinstance(sweep, int) and 0 <= sweep < sweeps):
        raise ValueError(f"{path}: sweep {sweep!r} not in a file with {sweeps} sweep(s)")
    try:
        abf.setSweep(sweep, channel=channel)
        current = np.array(abf.sweepY, dtype=np.float64)
        units = str(abf.sweepUnitsY).strip()
        sampling_rate = float(abf.dataRate)
        total_points = int(abf.dataPointCount)
        data_start = int(abf.dataByteStart)
        point_bytes = int(abf.dataPointByteSize)
    except Exception as error:  # noqa: BLE001 - pyabf raises many types on corrupt input
        raise ValueError(
            f"{path}: not a readable ABF file, truncated or corrupt "
            f"({type(error).__name__}: {error})"
        ) from error
    # pyabf reads the data section through a memory map that stops at the end of the file; a
    # file cut short shows up as fewer bytes than the header promises.
    data_bytes = path.stat().st_size - data_start
    if data_bytes < total_points * point_bytes:
        raise ValueError(
            f"{path}: truncated ABF file, {data_bytes} data bytes for {total_points} samples "
            f"× {point_bytes} bytes"
        )
    if units not in CURRENT_UNITS_TO_PA:
        raise ValueError(
            f"{path}: channel {channel} is in {units!r}, not a current; expected one of "
            f"{sorted(CURRENT_UNITS_TO_PA)} (pick the current channel with channel=k)"
        )
    current = (current * CURRENT_UNITS_TO_PA[units]).astype(np.float32)
    _check_trace_array(current, path)
    where = f", sweep {sweep} of {sweeps}" if sweeps > 1 else ""
    return Trace(
        current=current,
        sampling_rate=sampling_rate,
        description=f"ABF file {path.name}, channel {channel}{where}",
    )


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
