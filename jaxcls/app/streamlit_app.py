"""The Streamlit page: upload images, see the top-k classes, a saliency overlay and the latency.

Run through ``python -m jaxcls.app --checkpoint=DIR`` (or ``jaxcls serve``), which passes the
settings in the environment (``JAXCLS_APP_CHECKPOINT``, ``JAXCLS_APP_MAX_BYTES``,
``JAXCLS_APP_MAX_PIXELS``); the same variables drive Streamlit's ``AppTest`` in the tests. The
model is loaded and compiled once per server process (``st.cache_resource``), not per upload or
session; all the work is in `jaxcls.app.classifier`.
"""

from __future__ import annotations

import os

import pandas as pd
import streamlit as st

from jaxcls.app import classifier as clf


@st.cache_resource(show_spinner="Loading and compiling the model ...")
def get_classifier(checkpoint: str, max_bytes: int, max_pixels: int) -> clf.Classifier:
    return clf.Classifier(checkpoint, max_bytes=max_bytes, max_pixels=max_pixels)


def settings() -> tuple[str, int, int]:
    checkpoint = os.environ.get("JAXCLS_APP_CHECKPOINT", "")
    max_bytes = int(os.environ.get("JAXCLS_APP_MAX_BYTES", clf.DEFAULT_MAX_BYTES))
    max_pixels = int(os.environ.get("JAXCLS_APP_MAX_PIXELS", clf.DEFAULT_MAX_PIXELS))
    return checkpoint, max_bytes, max_pixels


def sidebar(model: clf.Classifier) -> tuple[int, str, str]:
    """Model facts and the controls; returns (top_k, method, explained class)."""
    bar = st.sidebar
    bar.header("Model")
    bar.markdown(f"**{model.model_name}** ({len(model.class_names)} classes)")
    tag = (model.loaded.meta.get("pretrained") or {}).get("tag")
    if tag:
        bar.caption(f"weights: {tag}")
    bar.caption(f"checkpoint: {model.loaded.step_dir}")
    bar.caption(f"preprocessing: `{model.pipeline}`")
    with bar.expander("Classes"):
        st.write(", ".join(model.class_names))
    bar.header("Test metrics")
    test = ((model.results or {}).get("splits") or {}).get("test")
    scalars = {k: float(v) for k, v in (test or {}).items() if isinstance(v, int | float)}
    if scalars:  # (results.json's splits also hold per-class tables and the confusion matrix)
        bar.table(pd.DataFrame({"value": scalars}))
    else:
        bar.caption("no results.json with test metrics beside this checkpoint")
    bar.header("Display")
    top_k = bar.slider("top-k", 1, min(10, len(model.class_names)), min(5, len(model.class_names)))
    method = bar.selectbox("saliency method", clf.SALIENCY_METHODS, index=0)
    explained = bar.selectbox("explain class", ["predicted class", *model.class_names], index=0)
    return top_k, method, explained


def show(model: clf.Classifier, upload, top_k: int, method: str, explained: str) -> None:
    """One upload: its message if refused, else image, top-k, overlay and latency."""
    try:
        result = model.classify(upload.name, upload.getvalue(), top_k)
    except clf.BadUpload as e:
        st.error(f"Cannot use this upload: {e}")
        return
    target = None if explained == "predicted class" else model.class_names.index(explained)
    overlay, explain_ms = model.explain(result, method, target)
    best = result.top_k[0]
    st.subheader(f"{upload.name}: {best['class']} ({best['probability']:.1%})")
    left, right = st.columns(2)
    left.image(result.original, caption="upload", width="stretch", alt="upload")
    shown = explained if target is not None else best["class"]
    right.image(overlay, caption=f"{method}: {shown}", width="stretch", alt="saliency overlay")
    table = pd.DataFrame(
        {"probability": [t["probability"] for t in result.top_k]},
        index=pd.Index([t["class"] for t in result.top_k], name="class"),
    )
    st.bar_chart(table, horizontal=True, sort="-probability")
    st.markdown(
        "  \n".join(f"top-{i + 1}: **{t['class']}** {t['probability']:.4f}"
                    for i, t in enumerate(result.top_k))
    )  # fmt: skip
    st.caption(
        f"latency: decode + preprocess {result.decode_ms:.1f} ms, model {result.predict_ms:.1f} "
        f"ms, {method} {explain_ms:.1f} ms"
    )


def main() -> None:
    st.set_page_config(page_title="jaxcls", layout="wide")
    checkpoint, max_bytes, max_pixels = settings()
    if not checkpoint:
        st.error("No checkpoint: start the app with python -m jaxcls.app --checkpoint=DIR")
        return
    model = get_classifier(checkpoint, max_bytes, max_pixels)
    top_k, method, explained = sidebar(model)
    st.title("jaxcls: classify and explain")
    uploads = st.file_uploader(
        f"Images (up to {max_bytes // (1024 * 1024)} MB and {max_pixels / 1e6:.0f} Mpixel each)",
        accept_multiple_files=True,
        key="uploads",
    )
    for upload in uploads or ():
        show(model, upload, top_k, method, explained)


main()
