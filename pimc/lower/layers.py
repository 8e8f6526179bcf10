"""Where a training step's stages sit in the crossbars: layer by layer, as FloatPIM keeps
a layer's weights, stored activations and error in one block. A TRANSFER costs its
crossbar distance, and stages placed in the order they run put a layer's update (at the
end of the step) half the memory away from the forward stage it writes the new weights
into (at the start), and its weight gradient as far from the activations it reads.

A stage belongs to the layer of the weights it reads or replaces (weights one stage
touches together, a convolution's kernel and bias, are one layer); a stage that touches
none, to the layer most of the stages it trades values with belong to (its producers
and readers; a weight gradient goes with its update, an activation with the layer it
follows, the loss with the last layer)."""

from __future__ import annotations

from collections import Counter

from pimc.lower.link import StageProgram


def layer_order(stages: list[StageProgram], params: dict[str, str]) -> list[int]:
    """The stages' indices in the order they sit: layers in the order their first stage
    runs, a layer's stages in the order they run. `params`: each new weight's result
    name -> the weight's input name; a result named `r.j.k` is a copy of result r (a
    weight's update computed in another placement's order, pimc.lower.mirror)."""
    weights = set(params.values())
    parent: dict[str, str] = {w: w for w in weights}

    def find(w: str) -> str:
        while parent[w] != w:
            parent[w] = parent[parent[w]]
            w = parent[w]
        return w

    def weight_of(result: str) -> str | None:
        if result in params:
            return params[result]
        head = result.rsplit(".", 2)[0]
        return params.get(head) if result.count(".") >= 2 else None

    touched: list[set[str]] = []
    for s in stages:
        mine = {t.name for t in s.program.inputs if t.name in weights}
        mine |= {w for t in s.program.outputs if (w := weight_of(t.name)) is not None}
        for w in mine:  # one stage's weights: one layer
            parent[find(w)] = find(next(iter(mine)))
        touched.append(mine)
    layer: dict[int, str] = {i: find(next(iter(m))) for i, m in enumerate(touched) if m}
    made = {t.name: i for i, s in enumerate(stages) for t in s.program.outputs}
    partners: list[set[int]] = [set() for _ in stages]
    for i, s in enumerate(stages):
        for name in s.residents:
            if name in made:
                partners[i].add(made[name])
                partners[made[name]].add(i)
    while True:  # the rest: the layer most of its partners (producers, readers) are in
        votes = {i: Counter(layer[j] for j in partners[i] if j in layer)
                 for i in range(len(stages)) if i not in layer}
        votes = {i: v for i, v in votes.items() if v}
        if not votes:
            break
        for i, v in votes.items():
            layer[i] = max(v, key=lambda g, i=i, v=v: (v[g], -min(abs(i - j) for j in partners[i]
                                                              if layer.get(j) == g)))
    first: dict[str, int] = {}
    for i in range(len(stages)):
        if i in layer:
            first.setdefault(layer[i], i)
    # a stage of no layer (nothing reads it: the loss read by the host) stays where it runs
    return sorted(range(len(stages)), key=lambda i: (first[layer[i]] if i in layer else i, i))
