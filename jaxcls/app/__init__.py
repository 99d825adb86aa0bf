"""The web app: a Streamlit page that classifies uploaded images and shows where the model looked.

``python -m jaxcls.app --checkpoint=DIR [--port=N]`` (or ``jaxcls serve ...``) starts it on
localhost. `classifier` holds the logic (upload -> decode -> preprocess -> top-k, saliency overlay,
the limits on bad uploads), `streamlit_app` the page, `__main__` the launcher. Imports explain/ and
input_pipeline; streamlit only in the page and when launched.
"""
