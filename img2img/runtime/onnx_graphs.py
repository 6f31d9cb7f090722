"""Graphs derived in memory from an exported generator, for tiling with shared instance-norm
statistics under ONNX Runtime:

- record_graph: each InstanceNormalization written out, with its per-channel mean and variance
  as extra graph outputs (mean_k, var_k);
- fixed_graph: each InstanceNormalization(x) replaced by x * a_k + b_k, with a_k and b_k graph
  inputs (fixed_feed computes them from recorded statistics).

onnx is imported by the functions, so importing this module costs nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    import onnx

# (mean, variance) over H and W, shape (C,), and the layer's epsilon: one instance-norm layer's
# statistics. The PyTorch backend records the same triples.
LayerStats = tuple[np.ndarray, np.ndarray, float]
# (scale, B, epsilon) of one InstanceNormalization node: its affine parameters.
NormParams = tuple[np.ndarray, np.ndarray, float]


def instance_norm_nodes(model: "onnx.ModelProto") -> list["onnx.NodeProto"]:
    return [n for n in model.graph.node if n.op_type == "InstanceNormalization" and n.domain in ("", "ai.onnx")]


def _epsilon(node: "onnx.NodeProto") -> float:
    return next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)


def norm_params(model: "onnx.ModelProto") -> list[NormParams]:
    """(scale, B, epsilon) of every InstanceNormalization, in graph order; [] when any of them
    takes its scale or bias from something other than an initializer (an unexpected graph:
    tiling then falls back to per-tile statistics)."""
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    nodes = instance_norm_nodes(model)
    if not all(n.input[1] in inits and n.input[2] in inits for n in nodes):
        return []
    return [
        (numpy_helper.to_array(inits[n.input[1]]), numpy_helper.to_array(inits[n.input[2]]), _epsilon(n))
        for n in nodes
    ]


def record_outputs(layers: int) -> list[str]:
    """The names of record_graph's statistics outputs: mean_0 .. mean_{k-1}, var_0 .. var_{k-1}."""
    return [f"mean_{i}" for i in range(layers)] + [f"var_{i}" for i in range(layers)]


def record_graph(model: "onnx.ModelProto") -> "onnx.ModelProto":
    """The graph (modified in place) with each InstanceNormalization written out, so that its
    statistics can be outputs: mean_k = mean_{H,W}(x), var_k = mean_{H,W}((x - mean_k)^2), both
    N x C x 1 x 1, and y = (x - mean_k) / sqrt(var_k + eps) * scale + B. Only the statistics
    are outputs.

    (Reading the statistics off the original node instead, with reductions beside it, keeps
    every x_k alive to the end of the graph in ONNX Runtime's schedule: 2.7 instead of 1.3 GB
    for a 1024^2 ResNet tile.)"""
    import onnx
    from onnx import helper, numpy_helper

    nodes = instance_norm_nodes(model)
    index = {n.output[0]: k for k, n in enumerate(nodes)}
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    graph = model.graph
    old_nodes = list(graph.node)
    del graph.output[:]
    del graph.node[:]
    graph.initializer.append(numpy_helper.from_array(np.array([2, 3], dtype=np.int64), "_img2img_hw_axes"))
    graph.initializer.append(numpy_helper.from_array(np.array([1, -1, 1, 1], dtype=np.int64), "_img2img_nchw"))

    def reduce_mean(src: str, out: str) -> onnx.NodeProto:
        if opset >= 18:  # axes became an input in opset 18
            return helper.make_node("ReduceMean", [src, "_img2img_hw_axes"], [out], keepdims=1)
        return helper.make_node("ReduceMean", [src], [out], axes=[2, 3], keepdims=1)

    for n in old_nodes:
        if n.op_type != "InstanceNormalization" or n.output[0] not in index:
            graph.node.append(n)
            continue
        k = index[n.output[0]]
        x, scale, bias = n.input
        t = [f"_img2img_{name}_{k}" for name in ("d", "d2", "ve", "sd", "s", "b", "dn", "ds", "eps")]
        graph.initializer.append(numpy_helper.from_array(np.array(_epsilon(n), dtype=np.float32), t[8]))
        graph.node.extend([
            reduce_mean(x, f"mean_{k}"),
            helper.make_node("Sub", [x, f"mean_{k}"], [t[0]]),
            helper.make_node("Mul", [t[0], t[0]], [t[1]]),
            reduce_mean(t[1], f"var_{k}"),
            helper.make_node("Add", [f"var_{k}", t[8]], [t[2]]),
            helper.make_node("Sqrt", [t[2]], [t[3]]),
            helper.make_node("Reshape", [scale, "_img2img_nchw"], [t[4]]),
            helper.make_node("Reshape", [bias, "_img2img_nchw"], [t[5]]),
            helper.make_node("Div", [t[0], t[3]], [t[6]]),
            helper.make_node("Mul", [t[6], t[4]], [t[7]]),
            helper.make_node("Add", [t[7], t[5]], [n.output[0]]),
        ])  # fmt: skip
        for out in (f"mean_{k}", f"var_{k}"):
            graph.output.append(helper.make_tensor_value_info(out, onnx.TensorProto.FLOAT, None))
    return model


def fixed_graph(model: "onnx.ModelProto") -> "onnx.ModelProto":
    """The graph (modified in place) with each InstanceNormalization(x) replaced by
    x * a_k + b_k, where a_k and b_k (1 x C x 1 x 1) are new inputs (see fixed_feed)."""
    import onnx
    from onnx import helper

    index = {n.output[0]: k for k, n in enumerate(instance_norm_nodes(model))}
    graph = model.graph
    old_nodes = list(graph.node)
    del graph.node[:]
    for n in old_nodes:
        if n.op_type != "InstanceNormalization" or n.output[0] not in index:
            graph.node.append(n)
            continue
        k = index[n.output[0]]
        scaled = f"_img2img_scaled_{k}"
        graph.node.append(helper.make_node("Mul", [n.input[0], f"a_{k}"], [scaled]))
        graph.node.append(helper.make_node("Add", [scaled, f"b_{k}"], [n.output[0]]))
        for name in (f"a_{k}", f"b_{k}"):
            graph.input.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, [1, None, 1, 1]))
    return model


def fixed_feed(stats: Sequence[LayerStats], params: Sequence[NormParams]) -> dict[str, np.ndarray]:
    """fixed_graph's a_k, b_k for given statistics: instance norm with a fixed mean and variance
    is affine, (x - mean) / sqrt(var + eps) * scale + B = x * a + b with
    a = scale / sqrt(var + eps) and b = B - mean * a."""
    feed = {}
    for k, ((mean, var, eps), (scale, bias, _)) in enumerate(zip(stats, params)):
        a = scale / np.sqrt(var + eps)
        feed[f"a_{k}"] = a.astype(np.float32).reshape(1, -1, 1, 1)
        feed[f"b_{k}"] = (bias - mean * a).astype(np.float32).reshape(1, -1, 1, 1)
    return feed
