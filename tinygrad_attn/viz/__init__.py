"""Drawing: computation graphs (graphviz) and pictures from training (hand-written SVG).

    from tinygrad_attn import viz
    viz.render(loss, "docs/graphs/loss")                     # loss.dot + loss.svg
    with viz.record_modules(model) as rec:
        loss = F.cross_entropy(model(x), y)
    viz.render(loss, "model", modules=rec, depth=1, hide_shape_ops=True)
    viz.attention_heatmaps_svg([w0, w1], tokens, "attn.svg")  # (H, T, T) per layer
    viz.training_curves_svg({"train_loss": [...], "val_acc": [...]}, "curves.svg")

To draw gradients: retain_grads(loss) (or t.retain_grad()) before loss.backward(retain_graph=True).
"""

from .graph import Graph, Node, Edge
from .tracing import trace, retain_grads
from .simplify import contract_shape_ops, collapse_modules
from .dot import to_dot
from .rendering import render
from .names import record_names
from .modules import record_modules
from .plots import attention_heatmaps_svg, training_curves_svg, nice_ticks

__all__ = ["Graph", "Node", "Edge", "trace", "to_dot", "render", "retain_grads", "contract_shape_ops",
           "collapse_modules", "record_names", "record_modules", "attention_heatmaps_svg", "training_curves_svg", "nice_ticks"]
