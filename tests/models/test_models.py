"""Behaviour of every model: the contract the trainer, Grad-CAM and fine-tuning rely on.

* Whole registry, abstractly (``eval_shape``, no compilation): output shapes and dtypes, feature
  keys in order, feature ranks, ``default_cam_layer``, ``head``, float32 parameters.
* One representative per family/variant, numerically, at 32x32 and batch 2: finite outputs, every
  parameter gets a nonzero gradient, BatchNorm train vs eval, running statistics update, dropout
  reseeding, the jitted functional step compiles once, bf16 compute.
Set JAXCLS_SLOW_TESTS=1 to run the numeric tests over the whole registry (minutes per big model).
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxcls import models
from jaxcls.models import layers
from tests.models.abstract import abstract_model
from tests.models.small import REPRESENTATIVES, slow

# The Keras layouts (keras_resnet50, keras_resnet50v2, keras_inception_v3) share these families'
# code; their differences are tested in test_keras_layouts and the Keras ResNetV2 forward test.
if slow():
    NUMERIC = {name: {} for name in models.list_models()}
else:
    NUMERIC = REPRESENTATIVES
SIZE = 32
MIN_SIZE = {"inception_v3": 75}  # the Inception stem needs at least 75 px


def _overrides(name: str, size: int) -> dict:
    info = models.model_info(name)
    if info.defaults.get("global_pool") == "flatten":
        return {"input_size": size}
    return {}


def _abstract(name, num_classes=1000, dtype=jnp.float32, size=64):
    return abstract_model(name, num_classes, dtype, **_overrides(name, size))


@pytest.mark.parametrize("name", models.list_models())
def test_contract_shapes_abstractly(name):
    size = max(64, MIN_SIZE.get(name, 0))
    model = _abstract(name, size=size)
    graphdef, state = nnx.split(model)

    def forward(state, x, train):
        return nnx.merge(graphdef, state, copy=True)(x, train=train)

    x = jax.ShapeDtypeStruct((2, size, size, 3), jnp.float32)
    for train in (False, True):
        logits, feats = jax.eval_shape(functools.partial(forward, train=train), state, x)
        assert logits.shape == (2, 1000) and logits.dtype == jnp.float32
        keys = list(feats)
        n = len(keys) - 2
        assert keys == ["stem"] + [f"stage{i}" for i in range(1, n + 1)] + ["pre_logits"]
        assert n >= 1
        for k in keys[:-1]:
            assert feats[k].ndim == 4 and feats[k].shape[0] == 2, (k, feats[k].shape)
        assert feats["pre_logits"].shape == (2, model.head.in_features)
    assert model.default_cam_layer in feats and feats[model.default_cam_layer].ndim == 4
    assert model.default_cam_layer == keys[-2]
    assert isinstance(model.head, nnx.Linear) and model.head.out_features == 1000
    for path, p in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        assert p.value.dtype == jnp.float32, path


@pytest.mark.parametrize(
    "name",
    ["cnn_small", "resnet18", "efficientnet_lite0", "resnetv2_50", "densenet121", "vgg16_bn"],
)
def test_bf16_compute_float32_logits_and_params(name):
    model = _abstract(name, dtype=jnp.bfloat16)
    graphdef, state = nnx.split(model)
    x = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
    logits, feats = jax.eval_shape(
        lambda s, x: nnx.merge(graphdef, s, copy=True)(x, train=True), state, x
    )
    assert logits.dtype == jnp.float32
    assert feats[model.default_cam_layer].dtype == jnp.bfloat16
    assert {p.value.dtype for _, p in nnx.to_flat_state(nnx.state(model, nnx.Param))} == {
        jnp.dtype("float32")
    }


def _perturbed(model, seed=0):
    """Adds noise to every parameter so zero-initialised BN scales do not block gradients.

    The noise comes from NumPy: eager jax.random per leaf compiled one small program per
    parameter shape (~100 for Inception-v3, seconds of test time).
    """
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    leaves, treedef = jax.tree.flatten(params)
    rng = np.random.default_rng(seed)
    leaves = [
        np.asarray(p) + 0.05 * rng.standard_normal(p.shape).astype(np.float32) for p in leaves
    ]
    return graphdef, jax.tree.unflatten(treedef, leaves), rest


# The numeric test models are tiny: compiling them costs far more than running them, so their
# step is compiled with LLVM's cheaper settings (about 30% less compile time, same HLO).
FAST_COMPILE = {"xla_llvm_disable_expensive_passes": True, "xla_backend_optimization_level": 0}


@pytest.fixture(scope="module", params=sorted(NUMERIC))
def stepped(request):
    """One jitted function per model, run four times; the numeric tests below read its results.

    The function reseeds dropout from ``key``, runs the model in eval mode (keeping the BatchNorm
    state it leaves), then a train-mode forward and backward (loss, gradients, new BatchNorm
    state). One compilation per model covers the train step and the eval checks; the calls are
    (key0), the same again (determinism), (key1) (eval must ignore the seed), and the stats the
    first train call wrote with a shifted input (same shapes: no retrace, and eval must leave
    those stats as they are).
    """
    name = request.param
    size = max(SIZE, MIN_SIZE.get(name, 0))
    overrides = {**_overrides(name, size), **NUMERIC[name]}
    model = models.create(name, num_classes=5, rngs=nnx.Rngs(params=0, dropout=1), **overrides)
    x = jax.random.normal(jax.random.key(42), (2, size, size, 3))
    graphdef, params, rest = _perturbed(model)
    target = jax.random.normal(jax.random.key(3), (2, 5))
    chex.clear_trace_counter()

    @functools.partial(jax.jit, compiler_options=FAST_COMPILE)
    @chex.assert_max_traces(n=1)
    def step(params, rest, x, key):
        m = nnx.merge(graphdef, params, rest, copy=True)
        nnx.reseed(m, dropout=key)
        eval_logits, feats = m(x, train=False)
        after_eval = nnx.state(m, nnx.Not(nnx.Param))

        def loss_fn(params):
            m = nnx.merge(graphdef, params, after_eval, copy=True)
            logits, _ = m(x, train=True)
            return jnp.sum(logits * target), (logits, nnx.state(m, nnx.Not(nnx.Param)))

        (loss, (train_logits, new_rest)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        return dict(
            loss=loss,
            grads=grads,
            new_rest=new_rest,
            train_logits=train_logits,
            eval_logits=eval_logits,
            feats=feats,
            stats_after_eval=nnx.state(m, nnx.BatchStat),
        )

    runs = [
        step(params, rest, x, jax.random.key(0)),
        step(params, rest, x, jax.random.key(0)),
        step(params, rest, x, jax.random.key(1)),
    ]
    # Same shapes, new values (the stats the first train call wrote): no retrace
    # (assert_max_traces would raise).
    runs.append(step(params, runs[0]["new_rest"], x + 1.0, jax.random.key(0)))
    return name, model, graphdef, params, rest, runs


def test_train_step_gradients_state_and_single_compile(stepped):
    name, model, graphdef, params, _, runs = stepped
    loss, grads, new_rest = runs[0]["loss"], runs[0]["grads"], runs[0]["new_rest"]
    assert np.isfinite(float(loss))
    zero = [
        jax.tree_util.keystr(path)
        for path, g in jax.tree_util.tree_leaves_with_path(grads)
        if not np.any(np.asarray(g) != 0) or not np.all(np.isfinite(np.asarray(g)))
    ]
    assert not zero, f"{name}: zero or non-finite gradient for {zero[:10]}"

    old_stats = jax.tree.leaves(nnx.state(model, nnx.BatchStat))
    new_stats = jax.tree.leaves(nnx.state(nnx.merge(graphdef, params, new_rest), nnx.BatchStat))
    if old_stats:
        assert any(not np.allclose(a, b) for a, b in zip(old_stats, new_stats)), name
    assert np.isfinite(float(runs[3]["loss"]))


def _has_dropout(model) -> bool:
    return any(isinstance(m, layers.Dropout) and m.rate > 0 for _, m in nnx.iter_graph(model))


def test_eval_is_deterministic_and_differs_from_train(stepped):
    name, model, graphdef, params, rest, runs = stepped
    t1, e1, feats = runs[0]["train_logits"], runs[0]["eval_logits"], runs[0]["feats"]
    t2, e3 = runs[1]["train_logits"], runs[2]["eval_logits"]
    assert np.all(np.isfinite(t1)) and np.all(np.isfinite(e1))
    for k, v in feats.items():
        assert np.all(np.isfinite(v)), k
    np.testing.assert_array_equal(t1, t2)  # same dropout seed -> same output
    np.testing.assert_array_equal(e1, e3)  # eval ignores the dropout seed
    if _has_dropout(model):
        assert not np.allclose(t1, runs[2]["train_logits"]), f"{name}: dropout ignores the seed"
    has_bn = bool(jax.tree.leaves(nnx.state(model, nnx.BatchStat)))
    if has_bn:
        assert not np.allclose(t1, e1, atol=1e-4), f"{name}: BN train/eval outputs identical"
        # eval mode does not touch the running statistics - neither the initial ones nor those
        # the train call just wrote (the fourth run starts from them)
        for run, start in ((runs[0], rest), (runs[3], runs[0]["new_rest"])):
            before = jax.tree.leaves(nnx.state(nnx.merge(graphdef, params, start), nnx.BatchStat))
            after = jax.tree.leaves(run["stats_after_eval"])
            assert before and all(np.array_equal(a, b) for a, b in zip(before, after))


@pytest.mark.parametrize("name", ["cnn_conv4invto128", "efficientnet_b0"])
def test_dropout_reseed_controls_train_randomness(name):
    overrides = _overrides(name, SIZE)
    if name.startswith("efficientnet"):
        overrides.update(drop_rate=0.5, drop_path_rate=0.5, depth_multiplier=0.1)
    model = models.create(name, num_classes=4, rngs=nnx.Rngs(params=0, dropout=1), **overrides)
    x = jax.random.normal(jax.random.key(0), (2, SIZE, SIZE, 3))
    # nnx.reseed on the stateful model, called through nnx.jit (one compilation). The trainer's
    # functional pattern (merge, reseed inside jit) is checked on every representative by the
    # eval test above.
    forward = nnx.jit(lambda m: m(x, train=True)[0])
    nnx.reseed(model, dropout=7)
    a0 = forward(model)
    b0 = forward(model)  # the stream advances between calls
    nnx.reseed(model, dropout=7)
    a1 = forward(model)
    nnx.reseed(model, dropout=8)
    a2 = forward(model)
    np.testing.assert_array_equal(a0, a1)
    assert not np.allclose(a0, a2)
    assert not np.allclose(a0, b0)


def test_parameter_paths_are_readable_for_freezing():
    model = _abstract("efficientnet_b0")
    paths = {"/".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    assert "stem/conv/kernel" in paths
    assert "stages/1/0/conv_dw/kernel" in paths
    assert "stages/1/0/se/conv_reduce/kernel" in paths
    assert "head/kernel" in paths and "head/bias" in paths
    resnet = _abstract("resnet50")
    paths = {"/".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(resnet, nnx.Param))}
    assert "stages/0/0/downsample/conv/kernel" in paths
    assert "stages/3/2/bn3/scale" in paths


def test_resnet_zero_init_last_and_cifar_stem():
    # One block per stage: the stem and the zero-init rule do not depend on the depth.
    short = dict(depths=(1, 1, 1, 1))
    m = models.create("resnet18", num_classes=10, rngs=nnx.Rngs(0), stem="cifar", **short)
    assert m.stem.conv.kernel.shape == (3, 3, 3, 64)
    np.testing.assert_array_equal(m.stages[0][0].bn2.scale[...], 0.0)
    _, feats = m(jnp.zeros((1, 32, 32, 3)), train=False)
    assert feats["stem"].shape == (1, 32, 32, 64) and feats["stage4"].shape == (1, 4, 4, 512)
    m = models.create("resnet18", num_classes=10, rngs=nnx.Rngs(0), zero_init_last=False, **short)
    np.testing.assert_array_equal(m.stages[0][0].bn2.scale[...], 1.0)


def test_inception_aux_logits_only_in_training():
    model = _abstract("inception_v3", num_classes=7, size=75)
    assert model.AuxLogits is None  # timm default: no auxiliary head
    model = nnx.eval_shape(
        lambda: models.create("inception_v3", num_classes=7, rngs=nnx.Rngs(0), aux_logits=True)
    )
    graphdef, state = nnx.split(model)
    x = jax.ShapeDtypeStruct((2, 299, 299, 3), jnp.float32)
    run = lambda train: jax.eval_shape(
        lambda s, x: nnx.merge(graphdef, s, copy=True)(x, train=train), state, x
    )
    _, feats = run(True)
    assert list(feats)[-2:] == ["pre_logits", "aux_logits"]
    assert feats["aux_logits"].shape == (2, 7) and feats["aux_logits"].dtype == jnp.float32
    assert feats["stage3"].shape == (2, 17, 17, 768) and feats["stage4"].shape == (2, 8, 8, 2048)
    _, feats = run(False)
    assert "aux_logits" not in feats


def test_keras_layouts():
    v1 = _abstract("ResNet50")
    assert v1.stem.conv.bias is not None and v1.stem.bn.epsilon == 1.001e-5
    blk = v1.stages[1][0]
    assert (blk.conv1.stride, blk.conv2.stride) == (2, 1)  # v1: stride on the first 1x1 conv
    assert blk.conv3.bias is not None
    assert models.model_info("ResNet50").defaults["zero_init_last"] is False  # Keras init
    tv = _abstract("resnet50")
    assert (tv.stages[1][0].conv1.stride, tv.stages[1][0].conv2.stride) == (1, 2)
    v2 = _abstract("ResNet50V2")
    strides = [[b.stride for b in stage] for stage in v2.stages]
    assert strides == [[1, 1, 2], [1, 1, 1, 2], [1] * 5 + [2], [1, 1, 1]]
    assert _abstract("resnetv2_50").stages[1][0].stride == 2
    inc = _abstract("InceptionV3", size=75)
    assert inc.Conv2d_1a_3x3.bn.scale is None and not inc.Mixed_5b.count_include_pad
    assert _abstract("inception_v3", size=75).Mixed_5b.count_include_pad


def test_keras_resnet_v2_shortcut_subsamples_and_pool_pads_with_zeros():
    m = models.create(
        "keras_resnet50v2", num_classes=3, rngs=nnx.Rngs(0), depths=(2, 1), channels=(16, 32)
    )
    x = jax.random.normal(jax.random.key(0), (1, 32, 32, 3))
    _, feats = m(x, train=False)
    # Keras: the stride sits in the last block of stage 1 -> stage1 is already at stride 8.
    assert feats["stem"].shape == (1, 8, 8, 64) and feats["stage1"].shape == (1, 4, 4, 16)
    stem = m.stem(x)
    padded = jnp.pad(stem, ((0, 0), (1, 1), (1, 1), (0, 0)))
    np.testing.assert_allclose(feats["stem"][0, 0, 0], padded[0, :3, :3].max(axis=(0, 1)), 1e-6)


def test_vgg_head_runs_below_7x7_by_adaptive_pooling():
    from jaxcls.models.vgg import adaptive_avg_pool

    x = jax.random.normal(jax.random.key(0), (1, 3, 5, 2))
    y = adaptive_avg_pool(x, 7, 7)
    assert y.shape == (1, 7, 7, 2)
    # PyTorch bins: output row i of 7 over 3 rows covers [floor(3i/7), ceil(3(i+1)/7)).
    np.testing.assert_allclose(y[0, 0, 0], x[0, 0, 0], rtol=1e-6)
    np.testing.assert_allclose(y[0, 2, 0], x[0, :2, 0].mean(0), rtol=1e-6)
    np.testing.assert_allclose(adaptive_avg_pool(x, 1, 1)[0, 0, 0], x[0].mean((0, 1)), rtol=1e-6)


def test_tf_variant_uses_same_padding_and_eps():
    tf = _abstract("tf_efficientnet_b0")
    pt = _abstract("efficientnet_b0")
    assert tf.stem.conv.padding == "same_tf" and tf.stem.bn.epsilon == 1e-3
    assert pt.stem.conv.padding == "symmetric" and pt.stem.bn.epsilon == 1e-5
    assert tf.stages[1][0].conv_dw.padding == "same_tf"
