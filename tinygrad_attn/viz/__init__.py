"""Drawing: computation graphs (graphviz) and pictures from training (hand-written SVG).

    from tinygrad_attn import viz
    viz.draw(layer, x)                                       # shows inline in Jupyter
    viz.draw(layer, x, view="backward", depth=1, size=(1920, None)).save("layer.png")
    viz.make_dot(loss, params=dict(model.named_parameters()))  # torchviz's call: a graphviz.Digraph
    viz.render(loss, "docs/graphs/loss")                     # loss.dot + loss.svg of any tensor
    viz.attention_heatmaps_svg([w0, w1], tokens, "attn.svg")  # (H, T, T) per layer
    viz.training_curves_svg({"train_loss": [...], "val_acc": [...]}, "curves.svg", log_y=("loss",))

The pipeline underneath: trace (the engine's graph as data) -> simplify (views, module calls,
compact nodes) -> to_dot (DOT text) -> rendering (graphviz). To draw the gradients of a tensor
you computed: retain_grads(loss) (or t.retain_grad()) before loss.backward(retain_graph=True).
"""

from .graph import Graph, Node, Edge
from .tracing import trace, retain_grads
from .simplify import contract_shape_ops, collapse_modules, merge_outputs
from .dot import to_dot
from .rendering import Drawing, render
from .drawing import draw, make_dot
from .names import record_names
from .modules import record_modules
from .plots import attention_heatmaps_svg, training_curves_svg, nice_ticks

__all__ = ["draw", "make_dot", "Drawing", "Graph", "Node", "Edge", "trace", "to_dot", "render", "retain_grads",
           "contract_shape_ops", "collapse_modules", "merge_outputs", "record_names", "record_modules",
           "attention_heatmaps_svg", "training_curves_svg", "nice_ticks"]
