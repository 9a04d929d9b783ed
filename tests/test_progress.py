"""ntkbook.progress.track: silent by default, a callback or a tqdm bar on request."""

import pytest

from ntkbook.progress import track


def test_track_is_silent_by_default(capsys):
    assert list(track(range(3))) == [0, 1, 2]
    assert capsys.readouterr() == ("", "")


def test_track_calls_back_after_each_finished_item():
    calls = []
    items = []
    for item in track(
        iter(["a", "b"]), total=2, description="fit", progress=lambda *a: calls.append(a)
    ):
        items.append(item)
        assert len(calls) == len(items) - 1  # called only once the item is finished
    assert items == ["a", "b"]
    assert calls == [(1, 2, "fit"), (2, 2, "fit")]


def test_track_with_true_draws_a_bar_on_stderr(capsys):
    assert list(track(range(4), description="grid", progress=True)) == [0, 1, 2, 3]
    assert "grid" in capsys.readouterr().err


def test_track_rejects_other_progress_values():
    with pytest.raises(TypeError, match="progress must be True, False or a callable"):
        list(track(range(2), progress="yes"))
