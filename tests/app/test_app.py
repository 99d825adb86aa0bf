"""The web app, headless: Streamlit's AppTest drives the real page (upload -> prediction ->
saliency overlay, each bad upload's message), and the classifier behind it gives the same
probabilities as tools/predict.py on the same file."""

from __future__ import annotations

import os

import numpy as np
import pytest

from jaxcls.app import __main__ as app_main
from jaxcls.app import classifier as clf
from tests.app import uploads
from tests.app.conftest import MAX_BYTES, TEST_METRICS
from tests.export.conftest import CLASSES

pytest.importorskip("skimage.data")
SCRIPT = os.path.join(os.path.dirname(clf.__file__), "streamlit_app.py")


@pytest.fixture
def app(app_workdir, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("JAXCLS_APP_CHECKPOINT", app_workdir)
    monkeypatch.setenv("JAXCLS_APP_MAX_BYTES", str(MAX_BYTES))
    at = AppTest.from_file(SCRIPT, default_timeout=300)
    at.run()
    assert not at.exception, at.exception
    return at


def _texts(at) -> str:
    parts = [e.value for e in (*at.markdown, *at.caption, *at.subheader, *at.error)]
    return "\n".join(str(p) for p in parts)


def test_upload_predicts_explains_and_survives_bad_uploads(app):
    at = app
    sidebar = "\n".join(str(e.value) for e in (*at.sidebar.markdown, *at.sidebar.caption))
    assert "**cnn** (4 classes)" in sidebar and "normalize('imagenet')" in sidebar
    metrics = at.sidebar.table[0].value
    assert metrics["value"].to_dict() == pytest.approx(TEST_METRICS)

    at.file_uploader[0].set_value([("chelsea.jpg", uploads.photo("chelsea"), "image/jpeg")]).run()
    assert not at.exception and not at.error
    assert len(at.subheader) == 1 and at.subheader[0].value.startswith("chelsea.jpg: ")
    predicted = at.subheader[0].value.split(": ", 1)[1].split(" (")[0]
    assert predicted in CLASSES
    assert "top-1: **" in _texts(at) and "latency: decode + preprocess" in _texts(at)
    captions = [c for img in at.image for c in img.captions]
    assert captions == ["upload", f"gradcam: {predicted}"]

    # Method and explained class are selectable.
    other = next(c for c in CLASSES if c != predicted)
    at.sidebar.selectbox[0].set_value("gradcampp")
    at.sidebar.selectbox[1].set_value(other)
    at.run()
    assert [c for img in at.image for c in img.captions] == ["upload", f"gradcampp: {other}"]

    # Every bad upload gets its message, next to a good one that still works.
    bad = uploads.bad_uploads(MAX_BYTES)
    files = [(n, b, "application/octet-stream") for n, b, _ in bad]
    files.append(("coffee.jpg", uploads.photo("coffee"), "image/jpeg"))
    at.file_uploader[0].set_value(files).run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == len(bad)
    for (name, _, reason), message in zip(bad, errors):
        assert message.startswith(f"Cannot use this upload: {name}: ") and reason in message
    assert [s.value.split(":")[0] for s in at.subheader] == ["coffee.jpg"]


def test_classifier_matches_predict_and_overlays_the_original(app_workdir, tmp_path):
    from jaxcls.explain import predict

    model = clf.Classifier(app_workdir)
    data = uploads.photo("astronaut")
    path = tmp_path / "astronaut.jpg"
    path.write_bytes(data)
    result = model.classify("astronaut.jpg", data, top_k=4)
    (expected,), errors = predict.predict(app_workdir, [str(path)], top_k=4)
    assert not errors
    assert [t["class"] for t in result.top_k] == [t["class"] for t in expected["top_k"]]
    np.testing.assert_allclose(
        [t["probability"] for t in result.top_k],
        [t["probability"] for t in expected["top_k"]],
        atol=1e-6,
    )
    overlay, ms = model.explain(result, "gradcam")
    assert overlay.shape == result.original.shape and overlay.dtype == np.uint8 and ms > 0
    assert np.abs(overlay.astype(int) - result.original).mean() > 5  # the heat map is drawn


def test_launcher_flags_and_missing_checkpoint_are_one_line_errors(tmp_path, capsys):
    assert app_main.main([f"--checkpoint={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("jaxcls.app: error: no checkpoint found")
    with pytest.raises(SystemExit) as e:
        app_main.main(["--checkpoint=x", "--port=99999"], prog="jaxcls serve")
    assert e.value.code == 2 and "jaxcls serve: error: --port" in capsys.readouterr().err


def test_launcher_command_serves_the_step_on_the_port(app_workdir):
    args = app_main.parse_args([f"--checkpoint={app_workdir}", "--port=8999", "--max_upload_mb=2"])
    cmd, env = app_main.command(args)
    assert cmd[1:4] == ["-m", "streamlit", "run"] and cmd[4] == SCRIPT
    assert cmd[cmd.index("--server.port") + 1] == "8999"
    assert cmd[cmd.index("--server.headless") + 1] == "true"
    assert env["JAXCLS_APP_CHECKPOINT"].endswith(os.path.join("checkpoints", "latest", "0"))
    assert env["JAXCLS_APP_MAX_BYTES"] == str(2 * 1024 * 1024)
