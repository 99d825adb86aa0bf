"""The runs table's optional MLflow logging, against a real (file-backed) MLflow store."""

import os

import pytest

from jaxcls.reporting import runs

mlflow = pytest.importorskip("mlflow")


def test_run_row_and_report_go_to_mlflow(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"file://{tmp_path}/mlruns")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    report = tmp_path / "wd" / "report"
    report.mkdir(parents=True)
    (report / "confusion_test.png").write_bytes(b"png")
    row = {
        "run_id": "r1",
        "model": "cnn",
        "epochs": 2,
        "test_accuracy": 0.9,
        "test_macro_f1": 0.8,
        "wall_seconds": 3.0,
    }
    assert runs.log_mlflow(row, str(tmp_path / "wd")) is True
    client = mlflow.tracking.MlflowClient()
    found = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(found) == 1 and found[0].info.run_name == "r1"
    assert found[0].data.metrics == {
        "test_accuracy": 0.9,
        "test_macro_f1": 0.8,
        "wall_seconds": 3.0,
    }
    assert found[0].data.params["model"] == "cnn"
    paths = [a.path for a in client.list_artifacts(found[0].info.run_id, "report")]
    assert paths == ["report/confusion_test.png"]


def test_no_tracking_uri_means_no_mlflow(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert runs.log_mlflow({"run_id": "r"}, str(tmp_path)) is False
    assert not os.path.exists(tmp_path / "mlruns")
