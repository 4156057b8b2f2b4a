"""Model registry, downloads against a local HTTP server, device choice, checkpoint errors."""

import hashlib
import http.server
import threading

import numpy as np
import pytest
import torch

from napari_sam2 import SAM2Error, Segmenter, available_models
from napari_sam2.engine import models


def test_official_models_are_listed_with_configs_that_exist():
    names = available_models()
    for size in ("tiny", "small", "base_plus", "large"):
        assert f"sam2.1_hiera_{size}" in names
        assert f"sam2_hiera_{size}" in names
    assert any("micro" in n for n in names)
    for name in names:
        assert models.config_path(models.model_spec(name)).is_file(), name


def test_unknown_model_names_the_choices():
    with pytest.raises(SAM2Error, match="sam2.1_hiera_tiny"):
        Segmenter("sam3_huge")


class _Server:
    """A loopback HTTP server: /good.pt, /bad.pt (wrong bytes), /cut.pt (connection dropped)."""

    def __init__(self, payload: bytes):
        payload_ = payload

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path == "/good.pt":
                    body = payload_
                elif self.path == "/bad.pt":
                    body = payload_[: len(payload_) // 2] + b"x" * (len(payload_) // 2)
                elif self.path == "/cut.pt":
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(payload_)))
                    self.end_headers()
                    self.wfile.write(payload_[:1000])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def server(random_checkpoint):
    payload = open(random_checkpoint, "rb").read()
    srv = _Server(payload)
    yield srv, hashlib.sha256(payload).hexdigest(), len(payload)
    srv.httpd.shutdown()


@pytest.fixture
def served_model(server, monkeypatch, tmp_path):
    """Registers a micro-architecture model that the local server serves at ``path``, with
    the served file's hash and size recorded (or the ones given)."""
    srv, sha, size = server
    monkeypatch.setenv("NAPARI_SAM2_CACHE", str(tmp_path / "cache"))
    micro = models.MODELS[models.MICRO_MODEL]

    def register(path: str, sha256=sha, size_bytes=size) -> str:
        spec = models.ModelSpec(
            "served",
            micro.config,
            f"{srv.url}{path}",
            sha256,
            6,
            micro.config_package,
            size_bytes=size_bytes,
        )
        monkeypatch.setitem(models.MODELS, "served", spec)
        return "served"

    return register


def test_download_verifies_hash_and_caches(served_model, tmp_path):
    name = served_model("/good.pt")
    path = models.checkpoint_path(name, progressbar=False)
    assert path.parent == tmp_path / "cache" and path.is_file()
    seg = Segmenter(name, device="cpu")
    assert seg.info["parameters"] > 1_000_000
    # A second call uses the cache: the server is not asked again.
    assert models.checkpoint_path(name, progressbar=False) == path


def test_wrong_checksum_is_refused_and_not_kept(served_model, tmp_path):
    name = served_model("/bad.pt")
    with pytest.raises(SAM2Error, match="corrupt"):
        models.checkpoint_path(name, progressbar=False)
    assert not list((tmp_path / "cache").glob("*.pt"))


def test_wrong_size_is_refused_and_not_kept(served_model, server, tmp_path):
    """Where no hash is published, the recorded size still catches a wrong file."""
    name = served_model("/good.pt", sha256=None, size_bytes=server[2] + 1)
    with pytest.raises(SAM2Error, match=r"corrupt: [\d,]+ bytes instead of [\d,]+"):
        models.checkpoint_path(name, progressbar=False)
    assert not list((tmp_path / "cache").glob("*.pt"))


def test_sam2_1_checkpoints_have_published_hashes_and_sizes():
    for size in ("tiny", "small", "base_plus", "large"):
        spec = models.model_spec(f"sam2.1_hiera_{size}")
        assert len(spec.sha256) == 64 and int(spec.sha256, 16) >= 0
        assert spec.size_bytes / 2**20 == pytest.approx(spec.size_mb, rel=0.01)
        assert models.model_spec(f"sam2_hiera_{size}").sha256 is None
    assert models.model_spec("sam2.1_hiera_tiny").sha256.startswith("7402e0d8")
    assert models.model_spec("sam2.1_hiera_large").size_bytes == 898_083_611


def test_missing_file_on_server_gives_advice(served_model):
    name = served_model("/nothing.pt")
    with pytest.raises(SAM2Error, match="checkpoint="):
        models.checkpoint_path(name, progressbar=False)


def test_interrupted_download_leaves_no_partial_file(served_model, tmp_path):
    name = served_model("/cut.pt")
    with pytest.raises(SAM2Error, match="Could not download"):
        models.checkpoint_path(name, progressbar=False)
    assert not list((tmp_path / "cache").glob("*.pt"))


def test_truncated_checkpoint_names_the_file(random_checkpoint, tmp_path):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(open(random_checkpoint, "rb").read()[:5000])
    with pytest.raises(SAM2Error, match="broken.pt"):
        Segmenter(models.MICRO_MODEL, device="cpu", checkpoint=broken)


def test_missing_checkpoint_file(tmp_path):
    with pytest.raises(SAM2Error, match="does not exist"):
        Segmenter(models.MICRO_MODEL, device="cpu", checkpoint=tmp_path / "nope.pt")


def test_checkpoint_of_another_architecture_lists_keys(random_checkpoint, tmp_path):
    state = torch.load(random_checkpoint, weights_only=True)["model"]
    state.pop(next(iter(state)))
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "other.pt"
    torch.save({"model": state}, path)
    with pytest.raises(SAM2Error, match=r"1 missing keys .*1 unexpected keys"):
        Segmenter(models.MICRO_MODEL, device="cpu", checkpoint=path)


def test_device_choice():
    assert models.select_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert models.select_device(None).type in ("cpu", "mps")
        with pytest.raises(SAM2Error, match="not available"):
            models.select_device("cuda")
    with pytest.raises(SAM2Error):
        models.select_device("tpu7")


def test_bundled_micro_checkpoint_is_hash_checked(monkeypatch, tmp_path):
    path = models.checkpoint_path(models.MICRO_MODEL)
    assert path.stat().st_size < 20e6
    spec = models.MODELS[models.MICRO_MODEL]
    wrong = models.ModelSpec(spec.name, spec.config, None, "0" * 64, 6, spec.config_package)
    monkeypatch.setitem(models.MODELS, models.MICRO_MODEL, wrong)
    with pytest.raises(SAM2Error, match="corrupt"):
        models.checkpoint_path(models.MICRO_MODEL)


def test_compile_needs_cuda():
    with pytest.raises(SAM2Error, match="needs CUDA"):
        Segmenter(models.MICRO_MODEL, device="cpu", compile=True)


def test_a_compiled_encoder_sees_one_image_or_full_batches():
    """A compiled encoder compiles for a minute for each new input shape: clicks give it one
    image, and propagation (the prompted frame with it) pads its last batch to full size, so
    no other shape reaches it. (A recording stand-in replaces the encoder's forward, as
    compiling does; test_compiled_encoder.py compiles it on CUDA.)"""
    from napari_sam2.engine.video.reading import frame_source_for
    from napari_sam2.engine.video.session import PropagationSession

    model = models.build_model(models.MICRO_MODEL, device="cpu")
    batches = []
    eager = model.image_encoder.forward

    def recording(images):
        batches.append(len(images))
        return eager(images)

    model.image_encoder.forward = recording
    assert models.is_compiled(model)
    frames = np.zeros((11, 32, 32), np.uint8)
    frames[:, 8:20, 8:20] = 200
    with PropagationSession(model, frame_source_for(frames), batch_size=4) as session:
        session.add_prompts({0: {1: dict(points=[(14, 14)])}})
        tracked = [frame for frame, _ids, _masks in session.propagate("forward")]
    assert tracked == list(range(11))
    assert 4 in batches and set(batches) <= {1, 4}
