"""Every script in examples/ runs as a user would run it (a subprocess), on its fastest settings.

The runs start together in one fixture so the module takes about as long as the slowest one.
MNIST and CIFAR-10 need torchvision (in the [dev] extra): they run one batch over a few fake images
written in the exact on-disk format torchvision reads, through torchvision's own dataset classes and
checks; without torchvision they must stop with the install hint.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import pickle
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TIMEOUT = 240  # generous for a loaded CI machine; each run takes a few seconds alone

# name -> (extra arguments, a regex the last printed line must match)
RUNS = {
    "linear_regression": ([], r"^test_loss=[\d.]+ max_weight_error=[\d.]+$"),
    "logistic_regression": ([], r"^test_acc=[\d.]+ test_loss=[\d.]+$"),
    "softmax_regression": ([], r"^test_acc=[\d.]+ test_loss=[\d.]+$"),
    "cnn_classifier": ([], r"^test_acc=[\d.]+ test_loss=[\d.]+$"),
    "lstm_sequence": ([], r"^test_loss=[\d.]+ baseline_loss=[\d.]+$"),
    "gan": ([], r"^fake_mean=-?[\d.]+ fake_std=[\d.]+$"),
    "ddp": ([], r"^test_acc=[\d.]+ test_loss=[\d.]+$"),  # two processes (gloo): ember starts the second
}
NEEDS_SKLEARN = {"logistic_regression", "softmax_regression", "cnn_classifier", "ddp"}
HAS_TORCHVISION = importlib.util.find_spec("torchvision") is not None
HAS_SKLEARN = importlib.util.find_spec("sklearn") is not None


def _env() -> dict:
    # the subprocess sees the same ember (editable or on sys.path) and stays on one thread per run
    return dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def _start(name: str, args: list, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(EXAMPLES / f"{name}.py"), "--fast", "--root-dir", str(cwd / name),
                             *args], cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def finished_runs(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("examples")
    running = {name: _start(name, args, cwd) for name, (args, _) in RUNS.items()
               if HAS_SKLEARN or name not in NEEDS_SKLEARN}
    done = {}
    for name, proc in running.items():
        try:
            out, err = proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        done[name] = (proc.returncode, out, err)
    return done


@pytest.mark.parametrize("name", sorted(RUNS))
def test_example_runs_and_prints_its_metric_line(name, finished_runs):
    if name in NEEDS_SKLEARN and not HAS_SKLEARN:
        pytest.skip("needs scikit-learn")
    rc, out, err = finished_runs[name]
    assert rc == 0, f"{name} exited {rc}\nstdout:\n{out}\nstderr:\n{err[-3000:]}"
    last = out.strip().splitlines()[-1]
    assert re.match(RUNS[name][1], last), f"{name} ended with {last!r}"
    assert "nan" not in last


def test_every_example_is_covered_and_documented():
    scripts = {p.stem for p in EXAMPLES.glob("*.py")}
    assert scripts == set(RUNS) | {"mnist", "cifar10"}
    readme = (EXAMPLES / "README.md").read_text()
    for name in scripts:
        assert f"{name}.py" in readme, f"examples/README.md does not list {name}.py"
        text = (EXAMPLES / f"{name}.py").read_text()
        docstring = text.split('"""')[1]
        assert 3 <= len(docstring.strip().splitlines()) <= 6, f"{name}.py: the docstring should be 3-6 lines"
        assert "import ember as pl" in text


def test_cnn_classifier_draws_its_curves(finished_runs, tmp_path_factory):
    if not HAS_SKLEARN:
        pytest.skip("needs scikit-learn")
    pytest.importorskip("matplotlib")
    rc, out, _ = finished_runs["cnn_classifier"]
    assert rc == 0
    png = Path(next(line for line in out.splitlines() if line.startswith("curves: ")).split(": ", 1)[1])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- MNIST and CIFAR-10: torchvision and a local folder ---------------------------------------------------


def _run(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), *args], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=TIMEOUT)


def _load_example(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_patched(name: str, preamble: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run an example as its own program (``__main__``) after a few lines of setup in the same process."""
    runner = cwd / f"run_{name}.py"
    script = str(EXAMPLES / f"{name}.py")
    runner.write_text(f"import runpy, sys\n{preamble}\nsys.argv = [{script!r}] + sys.argv[1:]\n"
                      f"runpy.run_path({script!r}, run_name='__main__')\n")
    return subprocess.run([sys.executable, str(runner), *args], cwd=cwd, env=_env(), capture_output=True, text=True,
                          timeout=TIMEOUT)


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_without_torchvision_the_example_says_how_to_install_it(name, tmp_path):
    # None in sys.modules makes `import torchvision` fail as if it were not installed
    done = _run_patched(name, "sys.modules['torchvision'] = None", "--fast", "--data-dir", str(tmp_path), cwd=tmp_path)
    assert done.returncode != 0
    assert "pip install torchvision matching your torch" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("name, expected", [
    ("mnist", ["MNIST/raw", "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
               "t10k-labels-idx1-ubyte"]),
    ("cifar10", ["cifar-10-batches-py", "data_batch_1", "data_batch_5", "test_batch", "batches.meta"]),
])
def test_a_missing_data_folder_names_the_expected_files(name, expected, tmp_path):
    module = _load_example(name)  # the check itself needs no torchvision
    with pytest.raises(SystemExit) as info:
        module.check_data_dir(str(tmp_path / "data"))
    message = str(info.value)
    for piece in expected:
        assert piece in message
    assert "No download happens" in message


def _write_idx(path: Path, magic_type: int, shape: tuple, payload: bytes) -> None:
    # IDX: two zero bytes, a type code (0x08 = uint8), the number of dims, then big-endian int32 sizes
    path.write_bytes(struct.pack(">BBBB", 0, 0, magic_type, len(shape)) + struct.pack(f">{len(shape)}I", *shape)
                     + payload)


def _fake_mnist(root: Path, n: int = 16) -> None:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix in ("train", "t10k"):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", 0x08, (n, 28, 28), bytes((i * 7) % 256 for i in range(n * 784)))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", 0x08, (n,), bytes(i % 10 for i in range(n)))


def _fake_cifar10(root: Path, n: int = 8) -> dict:
    """The python-pickle batches of cifar-10-batches-py; returns each file's md5 (torchvision checks them)."""
    import numpy as np

    # each file is a pickled dict: "data" is N x 3072 uint8 (R, G, B planes of 32x32), "labels" a list of ints
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = np.array([[(i * 3 + j) % 256 for j in range(3072)] for i in range(n)], dtype=np.uint8)
        batch = {"data": data, "labels": [i % 10 for i in range(n)]}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                                     "truck"]}, f)
    return {path.name: hashlib.md5(path.read_bytes()).hexdigest() for path in folder.iterdir()}


def _expect_checksums(md5: dict) -> str:
    """Lines that make torchvision.datasets.CIFAR10 expect these files' md5s instead of the real release's.

    With download=False, CIFAR10 checks every batch file and batches.meta against md5s written in the class
    (``train_list``, ``test_list``, ``meta``); a fake folder cannot match the release's, so the test states
    its own, and torchvision's check still runs on every file."""
    return ("from torchvision.datasets import CIFAR10\n"
            f"md5 = {md5!r}\n"
            "CIFAR10.train_list = [[name, md5[name]] for name, _ in CIFAR10.train_list]\n"
            "CIFAR10.test_list = [[name, md5[name]] for name, _ in CIFAR10.test_list]\n"
            "CIFAR10.meta = dict(CIFAR10.meta, md5=md5[CIFAR10.meta['filename']])")


def _checkpoint_steps(root: Path) -> list:
    return sorted(int(re.search(r"step=(\d+)", p.name).group(1)) for p in root.rglob("*.ckpt"))


@pytest.mark.skipif(not HAS_TORCHVISION, reason="needs torchvision")
def test_mnist_trains_an_epoch_on_a_fake_folder(tmp_path):
    _fake_mnist(tmp_path / "data")  # 16 images: 3 for validation, 13 to train on in batches of 4
    done = _run("mnist", "--max-epochs", "1", "--batch-size", "4", "--data-dir", str(tmp_path / "data"),
                "--root-dir", str(tmp_path / "logs"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.match(r"^test_acc=[\d.]+ test_loss=[\d.]+$", done.stdout.strip().splitlines()[-1])
    assert _checkpoint_steps(tmp_path / "logs") == [4]


@pytest.mark.skipif(not HAS_TORCHVISION, reason="needs torchvision")
def test_cifar10_trains_an_epoch_on_a_fake_folder(tmp_path):
    md5 = _fake_cifar10(tmp_path / "data")  # 5 x 8 images: 8 for validation, 32 to train on in batches of 4
    done = _run_patched("cifar10", _expect_checksums(md5), "--max-epochs", "1", "--batch-size", "4", "--data-dir",
                        str(tmp_path / "data"), "--root-dir", str(tmp_path / "logs"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.match(r"^test_acc=[\d.]+ test_loss=[\d.]+$", done.stdout.strip().splitlines()[-1])
    assert _checkpoint_steps(tmp_path / "logs") == [8]


def _expect_checksums_here(monkeypatch, md5: dict) -> None:
    """_expect_checksums, in this process."""
    from torchvision.datasets import CIFAR10

    monkeypatch.setattr(CIFAR10, "train_list", [[n, md5[n]] for n, _ in CIFAR10.train_list])
    monkeypatch.setattr(CIFAR10, "test_list", [[n, md5[n]] for n, _ in CIFAR10.test_list])
    monkeypatch.setattr(CIFAR10, "meta", dict(CIFAR10.meta, md5=md5[CIFAR10.meta["filename"]]))


@pytest.mark.skipif(not HAS_TORCHVISION, reason="needs torchvision")
def test_cifar10_checksums_are_still_checked(tmp_path, monkeypatch):
    md5 = _fake_cifar10(tmp_path)
    _expect_checksums_here(monkeypatch, md5)
    data = _load_example("cifar10").CIFAR10DataModule(str(tmp_path))
    data.setup("fit")
    assert len(data.train_set) + len(data.val_set) == 40
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_3", "ab") as f:
        f.write(b"\0")  # the md5 no longer matches: torchvision's own check must refuse the folder
    with pytest.raises(RuntimeError, match="not found or corrupted"):
        _load_example("cifar10").CIFAR10DataModule(str(tmp_path)).setup("fit")


@pytest.mark.skipif(not HAS_TORCHVISION, reason="needs torchvision")
@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_download_flag_reaches_torchvision(name, tmp_path, monkeypatch, capsys):
    """``--download`` asks torchvision to fetch the data (download=True); on a folder that is already complete
    torchvision fetches nothing, so this runs offline. Without the flag nothing asks for a download."""
    module = _load_example(name)
    datasets = pytest.importorskip("torchvision.datasets")
    cls = datasets.MNIST if name == "mnist" else datasets.CIFAR10
    if name == "mnist":
        _fake_mnist(tmp_path)
    else:
        _expect_checksums_here(monkeypatch, _fake_cifar10(tmp_path))
    asked = []
    real_download = cls.download

    def download(self):
        asked.append(self.train)
        real_download(self)  # torchvision's own: returns without fetching, as the files are there and intact

    monkeypatch.setattr(cls, "download", download)
    data_module = module.MNISTDataModule if name == "mnist" else module.CIFAR10DataModule
    data_module(str(tmp_path), download=True).prepare_data()
    assert asked == [True, False]  # the training and the test split
    asked.clear()
    data_module(str(tmp_path)).prepare_data()
    assert asked == []

    with pytest.raises(SystemExit):
        module.main(["--help"])
    assert "--download" in capsys.readouterr().out
