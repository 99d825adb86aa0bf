"""`run_study`: a study config -> every variant checked, run (or skipped or resumed), the table."""

from __future__ import annotations

import os

import ml_collections

from jaxcls.study import runner, spec, standin, table

SMOKE_DATA_DIR = "smoke_data"


def smoke_overrides(config: ml_collections.ConfigDict, variant_overrides: dict) -> dict:
    """What smoke mode changes in a variant: ``study.smoke_epochs`` epochs (half of them the
    head phase where the variant has one), no pretrained download, then ``study.smoke_overrides``."""
    head = variant_overrides.get("finetune.head_epochs", config.finetune.head_epochs)
    out = {"num_epochs": config.study.smoke_epochs, "init.pretrained": ""}
    if head:
        out["finetune.head_epochs"] = config.study.smoke_epochs / 2
    out.update(spec.flatten(config.study.smoke_overrides))
    return out


def make_standins(config: ml_collections.ConfigDict, workdir: str) -> ml_collections.ConfigDict:
    """A copy of ``config`` whose dataset fields point at stand-ins made in the workdir."""
    config = ml_collections.ConfigDict(config.to_dict())
    for field, description in config.study.smoke_data.items():
        if field not in config or not isinstance(config[field], str):
            raise spec.StudyError(f"study.smoke_data.{field}: {field} is not a text field")
        root = os.path.join(workdir, SMOKE_DATA_DIR, field)
        config[field] = standin.make(root, description, seed=config.seed)
    return config


def build(config: ml_collections.ConfigDict, workdir: str, grid: str = "") -> tuple[dict, list]:
    """Every variant's trainer config (each checked, its model created abstractly), and the
    names of those to run (smoke mode: ``study.smoke_variants``, if given)."""
    if config.smoke:
        config = make_standins(config, workdir)
    variants = spec.expand(config, grid)
    dataset_standin = config.study.smoke_data.get("dataset")
    num_classes = len(dataset_standin.classes) if dataset_standin else 10
    configs = {}
    for v in variants:
        overrides = dict(v.overrides)
        if config.smoke:
            overrides.update(smoke_overrides(config, overrides))
        configs[v.name] = spec.variant_config(config, overrides)
        spec.check_variant(v.name, configs[v.name], num_classes)
    to_run = list(configs)
    if config.smoke and config.study.smoke_variants:
        unknown = [n for n in config.study.smoke_variants if n not in configs]
        if unknown:
            raise spec.StudyError(
                f"study.smoke_variants {unknown} are not variants; variants: {', '.join(configs)}"
            )
        to_run = list(config.study.smoke_variants)
    return configs, to_run


def run_study(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    grid: str = "",
    metrics: tuple[str, ...] = (),
    title: str = "",
) -> int:
    """Runs the study in ``workdir``; returns the exit code: 0, 1 when a variant failed, or 143
    when a variant was interrupted (rerun to resume). StudyError on bad input, before any run."""
    keys = [table.resolve_metric(m) for m in (metrics or (config.study.metric,))]
    workdir = os.path.abspath(os.path.expanduser(workdir))
    configs, to_run = build(config, workdir, grid)
    os.makedirs(workdir, exist_ok=True)
    mode = " (smoke mode)" if config.smoke else ""
    print(
        f"study: {len(configs)} variants checked (config and model); running {len(to_run)}"
        f"{mode} in {workdir}",
        flush=True,
    )
    outcomes = runner.run_all(
        workdir,
        {name: configs[name] for name in to_run},
        use_subprocess=config.study.subprocess,
        summary=lambda name: _metric_text(name, workdir, configs[name], keys[0]),
    )
    rows = [
        table.row(name, os.path.join(workdir, name), configs[name], outcomes[name])
        for name in to_run
    ]
    heading = (
        f"{title or 'Study'}{mode}: {len(to_run)} variants, best {table.header(keys[0])} first."
    )
    paths = table.write(workdir, rows, keys[0], heading, extra_bars=keys[1:])
    print(f"study: wrote {', '.join(os.path.basename(p) for p in paths)} to {workdir}", flush=True)
    failed = [n for n, o in outcomes.items() if o.status == "failed"]
    interrupted = [n for n, o in outcomes.items() if o.status == "interrupted"]
    if interrupted:
        print(f"study: interrupted in {interrupted[0]}: rerun the same command to resume")
        return runner.PREEMPTED_EXIT_CODE
    if failed:
        print(
            f"study: {len(failed)} of {len(to_run)} variants failed: {', '.join(failed)} "
            f"(see {workdir}/<variant>/error.txt)"
        )
        return 1
    return 0


def _metric_text(name: str, workdir: str, config, key: str) -> str:
    r = table.row(name, os.path.join(workdir, name), config, runner.Outcome(name, "done"))
    return "" if r.get(key) is None else f", {table.header(key)} {r[key]:.4f}"
