"""`d4rl:` datasets from D4RL-layout HDF5 files (written here with h5py); no network access."""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest

from suite import net
from suite.cli import main
from suite.data import d4rl, load_dataset
from suite.errors import UserError

N, OBS, ACT = 10, 3, 2
TERMINAL_AT, TIMEOUT_AT = 3, 7  # episodes: rows 0-3 (terminal), 4-7 (time-out), 8-9 (unfinished)


def d4rl_arrays() -> dict[str, np.ndarray]:
    observations = np.arange(N * OBS, dtype=np.float32).reshape(N, OBS)
    terminals = np.zeros(N, dtype=bool)
    terminals[TERMINAL_AT] = True
    timeouts = np.zeros(N, dtype=bool)
    timeouts[TIMEOUT_AT] = True
    return {
        "observations": observations,
        "actions": np.linspace(-1, 1, N * ACT, dtype=np.float32).reshape(N, ACT),
        "rewards": np.arange(N, dtype=np.float32) * 10.0,
        "terminals": terminals,
        "timeouts": timeouts,
    }


def write_hdf5(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as handle:
        for key, value in arrays.items():
            handle.create_dataset(key, data=value)
        handle.create_dataset("infos/qpos", data=np.zeros((N, 2)))  # extra D4RL keys are ignored
    return path


def place(name: str, arrays: dict[str, np.ndarray]) -> Path:
    return write_hdf5(d4rl.dataset_dir() / d4rl.file_name(name), arrays)


def test_file_names_follow_d4rl_infos() -> None:
    assert d4rl.file_name("hopper-medium-replay-v2") == "hopper_medium_replay-v2.hdf5"
    assert d4rl.file_name("halfcheetah-medium-expert-v2") == "halfcheetah_medium_expert-v2.hdf5"
    assert d4rl.file_name("walker2d-random-v2") == "walker2d_random-v2.hdf5"
    assert len(d4rl.known_names()) == 15 and "hopper-expert-v2" in d4rl.known_names()


def test_without_next_observations_follows_qlearning_dataset() -> None:
    raw = d4rl_arrays()
    place("halfcheetah-medium-v2", raw)
    dataset = load_dataset("d4rl:halfcheetah-medium-v2")
    # D4RL's qlearning_dataset keeps rows 0..N-2 except time-outs: next obs is the following row.
    kept = [0, 1, 2, 3, 4, 5, 6, 8]
    assert len(dataset) == len(kept)
    np.testing.assert_array_equal(dataset.observations, raw["observations"][kept])
    np.testing.assert_array_equal(dataset.next_observations, raw["observations"][[k + 1 for k in kept]])
    np.testing.assert_array_equal(dataset.actions, raw["actions"][kept])
    np.testing.assert_array_equal(dataset.rewards, raw["rewards"][kept])
    np.testing.assert_array_equal(dataset.terminals, [0, 0, 0, 1, 0, 0, 0, 0])
    # Row 6 precedes the dropped time-out row 7, so it now ends its (truncated) episode.
    np.testing.assert_array_equal(dataset.timeouts, [0, 0, 0, 0, 0, 0, 1, 0])
    np.testing.assert_allclose(dataset.episode_returns(), [0 + 10 + 20 + 30, 40 + 50 + 60, 80])
    assert dataset.env_id == "HalfCheetah-v4"
    assert (dataset.ref_min_score, dataset.ref_max_score) == (-280.178953, 12135.0)
    assert dataset.normalized_score(12135.0) == pytest.approx(100.0)
    assert dataset.normalized_score(-280.178953) == pytest.approx(0.0)
    assert dataset.normalized_score(3000.0) == pytest.approx(100 * (3000 + 280.178953) / (12135 + 280.178953))
    assert dataset.provenance["source"] == "D4RL"
    assert "qlearning_dataset" in dataset.provenance["next_observations"]


def test_stored_next_observations_keep_every_row() -> None:
    raw = d4rl_arrays()
    raw["next_observations"] = raw["observations"] + 0.5
    place("hopper-medium-replay-v2", raw)
    dataset = load_dataset("d4rl:hopper-medium-replay-v2")
    assert len(dataset) == N
    np.testing.assert_array_equal(dataset.next_observations, raw["observations"] + 0.5)
    np.testing.assert_array_equal(dataset.timeouts, raw["timeouts"].astype(np.float32))
    np.testing.assert_array_equal(dataset.terminals, raw["terminals"].astype(np.float32))
    assert dataset.env_id == "Hopper-v4" and dataset.ref_max_score == 3234.3


def test_sha256_is_stable_across_loads_and_tracks_content() -> None:
    place("walker2d-medium-v2", d4rl_arrays())
    first = load_dataset("d4rl:walker2d-medium-v2").sha256
    assert load_dataset("d4rl:walker2d-medium-v2").sha256 == first
    changed = d4rl_arrays()
    changed["rewards"][0] = 1.0
    place("walker2d-medium-v2", changed)
    assert load_dataset("d4rl:walker2d-medium-v2").sha256 != first


def test_corrupt_file_is_a_user_error() -> None:
    path = d4rl.dataset_dir() / d4rl.file_name("hopper-medium-v2")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not an hdf5 file at all" * 10)
    with pytest.raises(UserError, match="hopper_medium-v2.hdf5 is not a readable HDF5 file"):
        load_dataset("d4rl:hopper-medium-v2")


def test_missing_key_is_named() -> None:
    raw = d4rl_arrays()
    del raw["timeouts"]
    place("hopper-medium-v2", raw)
    with pytest.raises(UserError, match="lacks key\\(s\\) timeouts"):
        load_dataset("d4rl:hopper-medium-v2")


def test_mismatched_lengths_are_named() -> None:
    raw = d4rl_arrays()
    raw["rewards"] = raw["rewards"][:-1]
    place("hopper-medium-v2", raw)
    with pytest.raises(UserError, match="mismatched length: .*rewards=9"):
        load_dataset("d4rl:hopper-medium-v2")


def test_nan_observation_is_named() -> None:
    raw = d4rl_arrays()
    raw["observations"][2, 0] = np.nan
    place("hopper-medium-v2", raw)
    with pytest.raises(UserError, match="d4rl:hopper-medium-v2: array observations holds NaN"):
        load_dataset("d4rl:hopper-medium-v2")


def test_unknown_name_and_unknown_source() -> None:
    with pytest.raises(UserError, match="unknown D4RL dataset 'hopper-medium-v9'; supported: halfcheetah-"):
        load_dataset("d4rl:hopper-medium-v9")
    with pytest.raises(UserError, match="source one of d4rl, minari, local"):
        load_dataset("rlds:hopper-medium")
    with pytest.raises(UserError, match="source one of d4rl, minari, local"):
        load_dataset("hopper-medium-v2")


def test_offline_download_fails_fast_with_instructions(
    monkeypatch: pytest.MonkeyPatch, closed_port: int
) -> None:
    monkeypatch.setattr(d4rl, "BASE_URL", f"http://127.0.0.1:{closed_port}/gym_mujoco_v2")
    started = time.monotonic()
    with pytest.raises(UserError, match=r"\$D4RL_DATASET_DIR") as caught:
        load_dataset("d4rl:hopper-medium-v2")
    assert time.monotonic() - started < 2.0
    assert "hopper_medium-v2.hdf5" in str(caught.value)
    leftovers = list(d4rl.dataset_dir().iterdir()) if d4rl.dataset_dir().exists() else []
    assert leftovers == []


def test_reachability_check_is_bounded_when_connect_hangs(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()

    def hang(*args, **kwargs):  # like a DNS lookup with no answer: ignores the socket timeout
        release.wait(10)
        raise OSError("released")

    monkeypatch.setattr(net.socket, "create_connection", hang)
    started = time.monotonic()
    try:
        assert d4rl.tcp_reachable("127.0.0.1", 9, timeout_s=0.3) is False
        assert time.monotonic() - started < 1.0
    finally:
        release.set()


@contextlib.contextmanager
def local_server(directory: Path) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 serving `directory`; yields its base URL."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_missing_file_is_downloaded_atomically_from_local_server(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    served = tmp_path / "server"
    write_hdf5(served / d4rl.file_name("walker2d-expert-v2"), d4rl_arrays())
    with local_server(served) as url:
        monkeypatch.setattr(d4rl, "BASE_URL", url)
        dataset = load_dataset("d4rl:walker2d-expert-v2")
    target = d4rl.dataset_dir() / "walker2d_expert-v2.hdf5"
    assert target.read_bytes() == (served / "walker2d_expert-v2.hdf5").read_bytes()
    assert os.listdir(d4rl.dataset_dir()) == ["walker2d_expert-v2.hdf5"]  # no temp file left behind
    assert len(dataset) == 8 and dataset.env_id == "Walker2d-v4"
    # Present now: a second load does not download (the server is gone).
    assert load_dataset("d4rl:walker2d-expert-v2").sha256 == dataset.sha256


def test_download_that_is_not_hdf5_leaves_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    served = tmp_path / "server"
    served.mkdir()
    (served / "hopper_random-v2.hdf5").write_text("<html>moved</html>")
    with local_server(served) as url:
        monkeypatch.setattr(d4rl, "BASE_URL", url)
        with pytest.raises(UserError, match="hopper_random-v2.hdf5 failed .*not an HDF5 file.*D4RL_DATASET_DIR"):
            load_dataset("d4rl:hopper-random-v2")
        with pytest.raises(UserError, match="failed \\(HTTP Error 404"):
            load_dataset("d4rl:hopper-expert-v2")
    assert os.listdir(d4rl.dataset_dir()) == []


def test_baq_datasets_download_fetches_a_d4rl_file_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    served = tmp_path / "server"
    write_hdf5(served / d4rl.file_name("hopper-expert-v2"), d4rl_arrays())
    target = d4rl.dataset_dir() / "hopper_expert-v2.hdf5"
    with local_server(served) as url:
        monkeypatch.setattr(d4rl, "BASE_URL", url)
        assert main(["datasets", "download", "d4rl:hopper-expert-v2"]) == 0
    assert f"d4rl:hopper-expert-v2: downloaded to {target}" in capsys.readouterr().out
    assert target.read_bytes() == (served / "hopper_expert-v2.hdf5").read_bytes()
    assert main(["datasets", "download", "d4rl:hopper-expert-v2"]) == 0  # the server is gone: not needed
    assert "already in" in capsys.readouterr().out


@pytest.mark.parametrize(("dataset_id", "message"), [
    ("d4rl:hopper-random-v2", "is missing and 127.0.0.1:{port} is unreachable"),
    ("local:hopper-medium", "is built from the behaviour files, not downloaded: baq datasets build"),
    ("d4rl:hopper-mediocre-v2", "unknown D4RL dataset 'hopper-mediocre-v2'"),
])
def test_baq_datasets_download_errors_are_one_line(
    dataset_id: str, message: str, monkeypatch: pytest.MonkeyPatch, closed_port: int,
    capsys: pytest.CaptureFixture,
) -> None:
    monkeypatch.setattr(d4rl, "BASE_URL", f"http://127.0.0.1:{closed_port}/gym_mujoco_v2")
    assert main(["datasets", "download", dataset_id]) == 2
    err = capsys.readouterr().err
    assert err.startswith("baq: error: ") and err.count("\n") == 1
    assert message.format(port=closed_port) in err
