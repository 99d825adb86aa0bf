r"""Studies: many trainer runs written down as one config, run as one command, ending in one table.

  python -m jaxcls.study --config=configs/studies/NAME.py --workdir=DIR [--grid=...] [--metric=...]

A study config is an ordinary trainer config (``jaxcls.config_base.study_config()``: the base
config every variant starts from) with two more fields:

* ``study.variants``: ``{name: partial config}``, e.g.
  ``{'mobilenetv2': {'model': {'name': 'mobilenetv2_100', 'head': (256,)},
  'init': {'pretrained': 'keras:MobileNetV2'}}}``; each overrides the base.
* ``study.grid``: ``'optimizer.learning_rate=[5e-4,2e-4];data.rebalance=[up,mean]'`` (the
  ``--grid`` flag replaces it): every combination, crossed with each named variant (or with the
  base when there are none); a grid variant is named ``learning_rate=0.0005,rebalance=up``.
* ``study.metric``: the table's sort column (``--metric`` replaces it); ``study.subprocess``:
  one process per variant (the default) or all in this one.
* ``smoke`` (``--config.smoke=True``): every variant (or ``study.smoke_variants``) for
  ``study.smoke_epochs`` epochs on synthetic stand-ins of the datasets (``study.smoke_data``,
  see `standin`), made in ``DIR/smoke_data/``, without pretrained downloads; every variant is
  still built and its model created abstractly.

Variant values may name the config's top-level text fields: ``'eval.dataset': '{cinic10}/test'``
is filled in from ``--config.cinic10=folder:/data/cinic10``. ``--config.x=y`` changes the base,
so it applies to every variant that does not set ``x`` itself.

Each variant runs in ``DIR/<variant>/`` (`runner`); the table (`table`) is ``DIR/study.csv``,
``DIR/study.md``, ``DIR/study_curves.png`` and ``DIR/bar_<metric>.png``.
"""
