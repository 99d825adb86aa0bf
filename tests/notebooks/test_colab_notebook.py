"""notebooks/colab_tpu.ipynb runs top to bottom (nbclient, a real IPython kernel) in smoke mode:
CPU, a small synthetic image folder, a tiny model in bfloat16, no install, no TensorBoard. The
parameters are overridden the way papermill does it: a cell injected after the one tagged
'parameters'."""

import json
import os

import nbformat
from nbclient import NotebookClient

from tests.multihost import common

NOTEBOOK = os.path.join(common.ROOT, "notebooks", "colab_tpu.ipynb")


def test_notebook_is_stored_without_outputs_and_has_one_parameters_cell():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and "SMOKE = False" in tagged[0].source


def test_notebook_runs_in_smoke_mode(tmp_path):
    data = common.make_image_folder(str(tmp_path / "data"), per_class=16)
    workdir = str(tmp_path / "run")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    overrides = {
        "SMOKE": True,
        "DATASET": f"folder:{data}",
        "PRETRAINED": "",
        "MODEL": "cnn_small",
        "IMAGE_SIZE": 16,
        "BATCH_SIZE": 16,
        "NUM_EPOCHS": 2,
        "DTYPE": "bfloat16",
        "WORKDIR": workdir,
        "EXPORT_FORMAT": "stablehlo",
        "NUM_GRADCAM": 2,
    }
    injected = nbformat.v4.new_code_cell("\n".join(f"{k} = {v!r}" for k, v in overrides.items()))
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(index + 1, injected)
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": common.ROOT}}
    ).execute()  # raises CellExecutionError (with the cell's traceback) if any cell fails

    text = "\n".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
    )
    assert "backend: cpu" in text and "test accuracy" in text
    results = json.load(open(os.path.join(workdir, "results.json")))
    assert results["steps_run"] == 2 * (results["steps_per_epoch"])
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "data" in o]
    assert sum("image/png" in o["data"] for o in images) >= len(results["report"]["plots"]) + 2
    gradcam = os.listdir(os.path.join(workdir, "gradcam"))
    assert sum(n.endswith("_gradcam.png") for n in gradcam) == 2
    assert os.path.getsize(os.path.join(workdir, "export", "model.stablehlo")) > 0
