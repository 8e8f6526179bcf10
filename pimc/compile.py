"""The compiler driver: a kernel's source or an ONNX model -> typed IR -> the passes ->
stages, each split its best way and lowered to words -> columns -> micro-ops, linked.

The program records what it computes (`.meta`: the kernel's source text and name, or
the model's path and dtype; the float mode; the splits chosen), so `pimc run --verify`
can rebuild the order-matched reference from it.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import onnx

from pimc.fit import Split, fit
from pimc.frontend.dsl import deep_recursion, located_error, parse_kernels
from pimc.frontend.onnx_import import Imported, import_model
from pimc.ir import Kernel
from pimc.isa.arch import Arch
from pimc.isa.cost import item_counts
from pimc.isa.dtypes import parse_dtype
from pimc.isa.errors import LocatedError, PimError
from pimc.isa.uop import Program
from pimc.lower.build import build_word_program
from pimc.lower.fold import Fold
from pimc.lower.inspace import RelayoutError
from pimc.lower.layers import layer_order
from pimc.lower.link import StageProgram, link, relocated
from pimc.lower.mirror import UNPLANNED, mirror_view, scattered
from pimc.lower.move_ops import first_free, move_cycles
from pimc.lower.rowproduct import row_product, row_products
from pimc.lower.rowtree import row_tree
from pimc.lower.splits import Option, split_lanes, split_matmuls, with_chunks
from pimc.lower.stages import Stage, copy_windowed_inputs, split_stages
from pimc.lower.tensors import lower_tensors
from pimc.lower.views import View
from pimc.ops import VIEWS
from pimc.passes.dce import dce
from pimc.passes.pipeline import run_passes
from pimc.runtime.progress import Progress
from pimc.wear import repeat_runs


def select_kernel(kernels: list[Kernel], name: str | None, file: str) -> Kernel:
    if name is None:
        if len(kernels) > 1:
            names = ", ".join(k.name for k in kernels)
            raise PimError(f"{file}: several kernels ({names}): choose one with --kernel")
        return kernels[0]
    for k in kernels:
        if k.name == name:
            return k
    raise PimError(f"{file}: no kernel '{name}' (there are: {', '.join(k.name for k in kernels)})")


def compile_source(text: str, file: str, *, kernel: str | None = None, arch: Arch | None = None,
                   mode: str = "ieee", runs: int = 1, wear_level: bool = False,
                   print_after: str | None = None, stop_after: str | None = None
                   ) -> Program | None:
    """Compile one kernel of `text` to a micro-op program (`runs` times over, rotating the
    scratch columns between runs if `wear_level`); None if stopped after a pass."""
    if mode not in ("ieee", "ftz"):
        raise PimError(f"float mode must be ieee or ftz, not '{mode}'")
    arch = arch or Arch()
    ran = run_passes(select_kernel(parse_kernels(text, file), kernel, file), text, mode,
                     print_after=print_after, stop_after=stop_after)
    if ran is None:
        return None
    head = (("kernel", ran.name), ("mode", mode), ("kernel-source", text))
    try:
        with deep_recursion():
            prog, _ = _compile_stages(Imported(ran), split_stages(ran, arch.rows), file, arch,
                                      mode, head, "latency", {})
    except LocatedError as exc:  # the line of the source, with a caret
        raise located_error(text, exc.loc, exc.what) from None
    if runs == 1 and not wear_level:
        return prog
    fixed = max((max(t.columns(parse_dtype(t.dtype).bits)) + 1
                 for t in (*prog.inputs, *prog.outputs)), default=0)
    return dataclasses.replace(prog, ops=repeat_runs(prog.ops, runs, fixed, arch.cols,
                                                     wear_level, prog.routines))


OBJECTIVES = ("latency", "energy")
ROOM = 1 << 24  # crossbars a stage too big for the memory is counted on, to be folded
AS_ANY_PRODUCT = 1 << 20  # a weight gradient of at most these multiplications (and a
# crossbar's rows of positions) is also lowered as any product, the cheaper kept
Meta = tuple[tuple[str, str], ...]  # a program's records of what it computes


def compile_model(model: onnx.ModelProto, file: str, *, arch: Arch | None = None,
                  mode: str = "ieee", dtype: str = "f32",
                  bind: dict[str, np.ndarray] | None = None,
                  objective: str = "latency", print_after: str | None = None,
                  stop_after: str | None = None, state: dict[str, str] | None = None
                  ) -> tuple[Program | None, Imported]:
    """Compile an ONNX model: the program, and what was imported (the IR, and the
    weights the host writes as the program's inputs of those names).

    The inner axes of matrix products are split in C chunks (C = 1, 2, 4, ... up to the
    widest K, and the power of two above it): every C whose program fits the
    architecture's columns and crossbars is built (routines are synthesised once, so a
    candidate costs a lowering, not a synthesis) and counted from its structure; the one
    with the least `objective` (latency, or energy's upper bound) wins, ties to fewer
    crossbars. When no power of two fits (too few columns below, too many crossbars
    above), the fewest chunks that fit are found by bisection."""
    if mode not in ("ieee", "ftz"):
        raise PimError(f"float mode must be ieee or ftz, not '{mode}'")
    if objective not in OBJECTIVES:
        raise PimError(f"--objective must be latency or energy, not '{objective}'")
    arch = arch or Arch()
    imported = import_model(model, file, dtype=dtype, bind=bind,
                            variables=frozenset((state or {}).values()))
    ran = run_passes(imported.kernel, "", mode, skip=("typecheck",),  # typed by the import
                     print_after=print_after, stop_after=stop_after)
    if ran is None:
        return None, imported
    per_run = {p.name for p in ran.params} - set(imported.constants)
    imported.kernel = ran = copy_windowed_inputs(ran, per_run)
    weights = dict(imported.constants)
    head = (("model", file), ("mode", mode), ("dtype", dtype))
    memo: dict[object, tuple[Split, list[Option]]] = {}  # stages both tries share
    try:
        prog, imported = _compile_stages(imported, split_stages(ran, arch.rows), file, arch,
                                         mode, head, objective, memo, state)
    except RelayoutError:  # a relayout inside a stage it cannot do: products apart
        imported.kernel, imported.constants = ran, weights
        prog, imported = _compile_stages(imported, split_stages(ran, arch.rows, products=True),
                                         file, arch, mode, head, objective, memo, state)
    setup = tuple(dataclasses.replace(t, setup=t.name in imported.constants)
                  for t in prog.inputs)  # weights and constants: written once, at set-up
    return dataclasses.replace(prog, inputs=setup), imported


def _compile_stages(imported: Imported, stages: list[Stage], file: str, arch: Arch,
                    mode: str, head: Meta, objective: str,
                    memo: dict[object, tuple[Split, list[Option]]],
                    state: dict[str, str] | None = None) -> tuple[Program, Imported]:
    """Each stage split its best way (within the memory, together), then linked.
    `memo`: the stages already split, by their nodes, order and inputs."""
    ran = imported.kernel
    if len(stages) == 1:
        _, prog, imported.kernel, low = _best_split(ran, file, arch, mode, head, objective,
                                                    stages[0].result_view)
        imported.constants.update(low.host_values)  # e.g. a relayout's row-index column
        return prog, imported
    options: list[list[Option]] = []
    found = []
    roomy = dataclasses.replace(arch, max_crossbars=max(arch.max_crossbars, ROOM))
    placed = {s.kernel.results[0].name: s.result_view for s in stages if s.kernel.results}
    for st in stages:
        key = (st.kernel.name, tuple(sorted(st.kernel.graph)), st.result_view, st.residents)
        pools = [p for by in ("tree", "search")
                 if (p := row_tree(st.kernel, placed[st.residents[0]], arch, mode, file, by))
                 is not None] if key not in memo and len(st.residents) == 1 else []
        if pools:  # a global pool down the rows where its map lies, the cheaper way
            cost, pool = min((((program_cost(p, objective), p.crossbars), p) for p in pools),
                             key=lambda c: c[0])
            memo[key] = ((cost, pool, st.kernel, None), [(*cost, 0)])
        down = row_products(st.kernel, st.residents, arch, mode, file) if key not in memo else []
        if down:  # a weight gradient down the rows, its lanes a row
            splits = {n: ((program_cost(p, objective), p.crossbars), p, k, None)
                      for p, k, n in down}
            memo[key] = (min(splits.values(), key=lambda s: s[0]),
                         [(*s[0], n) for n, s in splits.items()])
        if key not in memo or (down and _small(st.kernel, arch.rows)):
            tried: list[list[Option]] = []
            try:
                split = _best_split(st.kernel, file, arch, mode, head, objective,
                                    st.result_view, tried, pack=not st.residents)
            except PimError:  # a stage alone too big for the memory: counted, to be folded
                split = _best_split(st.kernel, file, roomy, mode, head, objective,
                                    st.result_view, tried, pack=not st.residents)
            if key not in memo or split[0] < memo[key][0][0]:  # (a small one: the cheaper)
                memo[key] = (split, tried[0])
        found.append(memo[key][0])
        options.append(memo[key][1])
    fewest = [min(o, key=lambda c: (c[1], c[0])) for o in options]
    folds: list[Fold | None] = [None] * len(stages)

    def build(i: int, chunks: int, view: View | None = None) -> Split:
        st = stages[i]
        if "lanes-a-row" in dict(found[i][1].meta):  # a weight gradient down the rows
            prog, k, _ = row_product(st.kernel, arch, mode, file, chunks)  # type: ignore[misc]
            return (program_cost(prog, objective), prog.crossbars), prog, k, None
        return _best_split(st.kernel, file, roomy, mode, head, objective,
                           st.result_view if view is None else view, only=chunks,
                           pack=not st.residents)

    if sum(f[1].crossbars for f in found) > arch.max_crossbars:
        setup = set(imported.constants)
        found, folds = fit(stages, found, options, file, arch, objective, build,
                           lambda i: not state and _foldable(stages[i], ran, setup))
    built, chunks, searched = [], {}, []
    for i, (st, (_, prog, k, low)) in enumerate(zip(stages, found, strict=True)):
        searched += [int(v) for m, v in prog.meta if m == "searched"]
        if low is not None and low.host_values:  # a stage's own row-index column
            prog, values = _own_names(prog, low.host_values, f"_{i}")
            imported.constants.update(values)
        for n in k.graph:
            c = k.node(n).attr("chunks")
            if c is not None and k.node(n).op != "input" and chunks.setdefault(n, c) != c:
                raise PimError(f"{file}: {k.node(n).loc.label or k.node(n).op} is "
                               "computed in two stages split differently")
        fold = folds[i]
        built.append(StageProgram(prog, st.residents, _reader(st.kernel, st.residents),
                                  fold, fold.stored(prog.outputs, arch.cols) if fold else 0))
    imported.kernel = with_chunks(with_chunks(ran, chunks), dict.fromkeys(searched, 1),
                                  "searched")
    meta = (*head, ("objective", objective),
            ("stages", str(len(stages))),
            *([("node-chunks", " ".join(f"{n}:{c}" for n, c in sorted(chunks.items())))]
              if chunks else []),
            *([("node-searched", " ".join(map(str, sorted(searched))))] if searched else []),
            ("fewest-crossbars", str(sum(c for _, c, _ in fewest))),  # with the slowest splits
            *([("folds", " ".join(f"{i}:{f.parts}" for i, f in enumerate(folds) if f))]
              if any(folds) else []))  # stage: passes
    params = {r: imported.names[w] for r, w in (state or {}).items()}
    sources: dict[tuple[int, int], str] = {}
    order = None
    if state:  # each new value, the param it replaces, the tensor that param is
        meta += (("state", " ".join(f"{r}:{params[r]}:{w}" for r, w in state.items())),)
        built, sources = _mirrored(stages, found, built, params, file, arch, mode, head,
                                   objective)
        order = layer_order(built, params)
    return link(built, arch, file, meta, tuple(r.name for r in ran.results), params,
                sources, order), imported


def _small(kernel: Kernel, rows: int) -> bool:
    """Whether a weight gradient is small enough to be lowered as any product too (the
    cheaper stage kept, by its own cycles): its positions within a crossbar's rows, at
    most AS_ANY_PRODUCT multiplications."""
    (n,) = (n for n in kernel.graph if kernel.node(n).op == "matmul")
    inner = int(kernel.node(n).attr("inner", 1))
    return inner <= rows and math.prod(kernel.node(n).shape or ()) * inner <= AS_ANY_PRODUCT


def _foldable(st: Stage, kernel: Kernel, setup: set[str]) -> bool:
    """Whether a stage may be folded: it reads no per-run host input, and its result is
    no result of the program (which the host reads, unfolded). (Nor a training step's:
    its write-backs and mirrored updates place stages unfolded.)"""
    results = {r.name for r in kernel.results}
    return (bool(st.residents) and len(st.kernel.results) == 1
            and st.kernel.results[0].name not in results
            and all(p.name in st.residents or p.name in setup for p in st.kernel.params))


def _mirrored(stages: list[Stage], found: list[Split], built: list[StageProgram],
              params: dict[str, str], file: str, arch: Arch, mode: str, head: Meta,
              objective: str) -> tuple[list[StageProgram], dict[tuple[int, int], str]]:
    """A training step's update stages compiled again in the order of a placement of
    their weight (pimc.lower.mirror), with the split the reference follows, where that
    and its write-back count fewer cycles than the write-back from the update stage's
    own order (a transposed placement: a move per element); and which result each
    placement is written back from, by (stage, input) index (the rest from the update
    stage's own result)."""
    out, sources = list(built), {}
    base = list(itertools.accumulate((s.program.crossbars for s in built), initial=0))
    made = {o.name: relocated(o, base[j]) for j, s in enumerate(built) for o in s.program.outputs}
    free = [first_free(s.program.inputs + s.program.outputs) for s in built]
    for i, st in enumerate(stages):
        result = st.kernel.results[0].name if st.kernel.results else ""
        if result not in params or "lanes-a-row" in dict(found[i][1].meta):
            continue  # (a weight gradient down the rows writes back from its collection)
        chunks = int(dict(found[i][1].meta).get("chunks", 1))
        own = next(o for o in built[i].program.outputs if o.name == result)
        for j, sp in enumerate(built):
            for k, t in enumerate(sp.program.inputs):
                view = mirror_view(t, arch.rows) if t.name == params[result] else None
                if view is None or j == i or not scattered(t, arch.rows):
                    continue
                _, prog, _, low = _best_split(st.kernel, file, arch, mode, head, objective,
                                              view, only=chunks, pack=not st.residents)
                if low is not None and low.host_values:  # (a row index of its own: none yet)
                    continue
                mine = next(o for o in prog.outputs if o.name == result)
                mine_free = first_free(prog.inputs + prog.outputs)
                at = base[-1] + sum(s.program.crossbars for s in out[len(built):])
                dst = relocated(t, base[j])
                if t.placed_elements <= UNPLANNED and (
                        program_cost(prog, "latency")
                        + move_cycles(relocated(mine, at), dst, free[j], arch)
                        + sum(move_cycles(made[u.name], relocated(u, at), mine_free, arch)
                              for u in prog.inputs if u.name in st.residents)
                        >= move_cycles(relocated(own, base[i]), dst, free[j], arch)):
                    continue
                name = f"{result}.{j}.{k}"
                outs = tuple(dataclasses.replace(o, name=name) if o.name == result else o
                             for o in prog.outputs)
                out.append(StageProgram(dataclasses.replace(prog, outputs=outs),
                                        st.residents, _reader(st.kernel, st.residents)))
                sources[(j, k)] = name
                for m, u in enumerate(prog.inputs):
                    if u.name == params[result]:  # its own copy of the weight
                        sources[(len(out) - 1, m)] = name
    return out, sources


def _best_split(kernel: Kernel, file: str, arch: Arch, mode: str, head: Meta,
                objective: str, result_view: View = (),
                options: list[list[Option]] | None = None,
                only: int | None = None, pack: bool = True) -> Split:
    """The kernel built with every split of its inner axes that fits, the best kept
    (and every fitting one's (cost, crossbars, chunks) appended to `options`); with `only`,
    that split alone. `pack`: whether chunks may share crossbars (lower_tensors)."""
    widest = max((split_lanes(kernel, n) for n in kernel.graph), default=1)
    best: Split | None = None
    failure: PimError | None = None
    progress = Progress(f"{file}: compile {kernel.name}", max(1, widest.bit_length()),
                        "splits tried")

    def attempt(chunks: int) -> str:
        """Build with `chunks`; 'ok', or why not: 'columns' (too few), 'crossbars'."""
        nonlocal best, failure
        k = dce(split_matmuls(kernel, chunks))
        try:
            low, placements = lower_tensors(k, mode, chunks, arch, result_view, pack)
        except LocatedError:
            raise
        except PimError as exc:
            raise type(exc)(str(exc) if str(exc).startswith(file) else f"{file}: {exc}"
                            ) from None
        meta = (*head, ("chunks", str(chunks)),
                ("objective", objective))
        try:
            prog = build_word_program(low, placements, arch, file, f"{head[0][0]} '{k.name}'", meta)
        except PimError as exc:
            too_many = "crossbars, the architecture has" in str(exc)
            if not ("columns" in str(exc) or too_many):
                raise
            failure = exc  # the last: the most split that was tried
            return "crossbars" if too_many else "columns"
        key = (program_cost(prog, objective), prog.crossbars)
        tried.append((*key, chunks))
        if best is None or key < best[0]:
            best = (key, prog, k, low)
        return "ok"

    tried: list[Option] = []
    chunks, last = only or 1, 0  # the most chunks known to leave too few columns
    while True:
        progress.update(chunks.bit_length() - 1)
        outcome = attempt(chunks)
        if outcome == "columns":
            last = chunks
        if only or outcome == "crossbars" or (chunks >= widest and chunks & (chunks - 1) == 0):
            break
        # powers of two, the widest axis, and the power of two above it (whose chunks
        # pack whole crossbars: lower.tensors.chunk_geometry)
        chunks = min(2 * chunks, widest) if chunks < widest else 1 << (chunks - 1).bit_length()
    if best is None and last and chunks > last + 1 and not only:
        # between too few columns and too many crossbars: the fewest chunks that fit
        lo, hi = last, chunks
        while hi - lo > 1:
            mid = (lo + hi) // 2
            outcome = attempt(mid)
            lo, hi = (mid, hi) if outcome == "columns" else (lo, mid)
    progress.close()
    if best is None:
        assert failure is not None
        raise failure
    if options is not None:
        options.append(tried)
    return best


def _own_names(prog: Program, values: dict[str, np.ndarray], suffix: str
               ) -> tuple[Program, dict[str, np.ndarray]]:
    """Host-written values the lowering added, renamed apart from other stages'."""
    ins = tuple(dataclasses.replace(t, name=t.name + suffix) if t.name in values else t
                for t in prog.inputs)
    return (dataclasses.replace(prog, inputs=ins),
            {name + suffix: v for name, v in values.items()})


def _reader(kernel: Kernel, residents: tuple[str, ...]) -> str:
    """The annotation of a stage's moves: the first node that reads a resident."""
    for n in kernel.nodes_in_order():
        node = kernel.node(n)
        if node.op != "input" or node.attr("name") not in residents:
            continue
        while node.op in ("input", *VIEWS) and kernel.graph.out_degree(n):
            n = min(kernel.graph.successors(n))
            node = kernel.node(n)
        return f"{node.loc} {node.loc.label or node.op}"
    return ""


def program_cost(prog: Program, objective: str) -> float:
    """Cycles, or energy's upper bound in fJ, counted from the structure."""
    if objective == "energy":
        from pimc.runtime.count import count_program

        return count_program(prog).energy_bounds[1]
    routines = {r.name: r for r in prog.routines}
    memo: dict[str, tuple[int, int]] = {}
    return sum(item_counts(i, routines, prog.arch, memo)[1] for i in prog.ops)
