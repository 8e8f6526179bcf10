"""Fitting a network's stages into the memory: each stage's split chosen together within
the crossbars the architecture has (the slowest stage as fast as can be), and where even
the fewest crossbars do not fit, the biggest stages folded (pimc.lower.fold)."""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Callable, Iterator

import numpy as np

from pimc.ir import Kernel
from pimc.isa.arch import Arch
from pimc.isa.errors import PimError
from pimc.isa.uop import Program, TensorIO, apply_view
from pimc.lower.fold import Fold
from pimc.lower.layout import Lowered
from pimc.lower.link import relocated
from pimc.lower.move_ops import first_free, move_cycles, prefetch
from pimc.lower.splits import Option, channel_chunks, split_lanes, within
from pimc.lower.stages import Stage
from pimc.lower.tensors import result_space

Split = tuple[tuple[float, int], Program, Kernel, Lowered | None]  # (cost, crossbars), ...
Build = Callable[..., Split]  # (stage index, chunks[, result view]) -> its split
Pair = tuple[TensorIO, TensorIO, int]  # a relayout: from, to, its staging column
Inputs = Callable[..., list[Pair]]  # (stage index, split[, fold, pass]) -> its gathers
WASTE = 4  # a fold whose last band runs past its axis by more than 1/WASTE of it is not
# tried (the rows past it compute nothing)


def fit(stages: list[Stage], found: list[Split], options: list[list[Option]], file: str,
        arch: Arch, objective: str, build: Build, foldable: Callable[[int], bool]
        ) -> tuple[list[Split], list[Fold | None]]:
    """Each stage's split, together within the memory, the slowest stage as fast as can
    be (pimc.lower.splits.within), and each stage's fold (None: computed in one pass;
    see _fold, where even the fewest crossbars do not fit). For latency a stage's cost
    counts the moves that build its inputs too (a gather can cost more than the
    arithmetic, and depends on the split: chunks of whole channels gather once a
    class), the stages side by side at their best splits: those of its best split for
    each of its splits, until a stage is the slowest; then every split of that stage is
    built and its moves counted, and the splits chosen again, until the slowest stage's
    are all counted (counting every stage's every split costs a compile twice the
    time)."""
    bases = list(itertools.accumulate((f[1].crossbars for f in found), initial=0))
    made = {o.name: relocated(o, bases[j]) for j, f in enumerate(found)
            for o in f[1].outputs}

    def inputs(i: int, split: Split, fold: Fold | None = None, f: int = 0) -> list[Pair]:
        """The gathers of stage i at `split` (pass f of `fold`'s)."""
        free = first_free(split[1].inputs + split[1].outputs)
        return [(made[t.name], relocated(fold.passed(t, f) if fold else t, bases[i]), free)
                for t in split[1].inputs
                if t.name in stages[i].residents] if objective == "latency" else []

    pairs = [inputs(i, f) for i, f in enumerate(found)]
    prefetch([p for ps in pairs for p in ps], arch)
    moves = [sum(move_cycles(*p, arch) for p in ps) for ps in pairs]
    built: dict[tuple[int, int], tuple[Split, int]] = {}  # (stage, chunks) -> split, moves
    counted: set[int] = set()  # the stages whose every split was built
    while True:
        costs = [[(o[0] + built[(i, o[2])][1] if (i, o[2]) in built else o[0] + moves[i],
                   *o[1:]) for o in opts] for i, opts in enumerate(options)]
        picks = within(costs, arch.max_crossbars)
        if picks is None:
            return _fold(stages, found, options, costs, file, arch, build, foldable, inputs)
        slow = max(range(len(stages)), key=lambda i: picks[i][0])
        st, have = stages[slow], {o[2] for o in options[slow]}
        if slow in counted or not pairs[slow] or len(have) < 2:
            break
        counted.add(slow)
        widest = max(split_lanes(st.kernel, n) for n in st.kernel.graph)
        todo = [c for c in sorted(have) if c] + [  # and chunks of whole channels or rows
            c for c in channel_chunks(st.kernel, widest)
            if min(have) // 2 < c < max(have) and c not in have][:3]
        splits = {}
        for c in todo:
            with contextlib.suppress(PimError):  # (too few columns, or crossbars)
                splits[c] = build(slow, c)
        prefetch([p for c in splits for p in inputs(slow, splits[c])], arch)
        for c, split in splits.items():
            built[(slow, c)] = split, sum(move_cycles(*p, arch) for p in inputs(slow, split))
            if c not in have:
                options[slow] = [*options[slow], (*split[0], c)]
    return [built[(i, p[2])][0] if (i, p[2]) in built else
            f if f[1].crossbars <= p[1] else build(i, p[2])
            for i, (f, p) in enumerate(zip(found, picks, strict=True))], [None] * len(stages)


def _fold(stages: list[Stage], found: list[Split], options: list[list[Option]],
          costs: list[list[Option]], file: str, arch: Arch, build: Build,
          foldable: Callable[[int], bool], inputs: Inputs
          ) -> tuple[list[Split], list[Fold | None]]:
    """Where even the fewest crossbars do not fit: each foldable stage's folds offered
    beside its splits (FloatPIM computes a layer's outputs in turn when its blocks cannot
    hold them all at once), and one choice a stage made together within the memory, the
    slowest stage as fast as can be (within). A fold costs its passes' arithmetic and
    their gathers, which can cost far more (a band cut finer than the map's crossbars
    gathers short runs: AlexNet's conv2 in 26 passes of a row each spent 98% of its
    cycles on moves). The gathers of the folds chosen are counted (every pass's: they
    vary by half from pass to pass), and the choice made again, until every fold chosen
    is counted (before: _guess)."""
    limit = arch.max_crossbars
    choices = [list(c) for c in costs]
    bands: dict[tuple[int, int], tuple[Split, Fold]] = {}  # (stage, tag < 0) -> band
    steps: dict[int, Iterator[list[tuple[Split, Fold]]]] = {}  # the folds not offered yet
    moved: dict[int, float] = {}  # the gathers at the stage's fewest crossbars, unfolded

    def offer(i: int) -> None:
        """Stage i's folds at the next step of its view (none left: forgotten)."""
        step = next(steps[i], None)
        if step is None:
            del steps[i]
        for band, fold in step or ():
            tag = -1 - len(bands)
            bands[(i, tag)] = band, fold
            size = band[1].crossbars + fold.stored(band[1].outputs, arch.cols)
            choices[i].append((fold.parts * band[0][0] + moved[i], size, tag))

    for i, st in enumerate(stages):
        least = min(options[i], key=lambda c: (c[1], c[0]))
        if foldable(i) and least[2] > 0:  # (0: a row tree)
            moved[i] = min(c[0] for c in costs[i] if c[2] == least[2]) - least[0]
            split = found[i] if found[i][1].crossbars == least[1] else build(i, least[2])
            steps[i] = _bands(st, i, split, build, math.ceil(least[1] / limit))
            offer(i)
    counted: dict[tuple[int, int], int] = {}  # (stage, tag) -> its gathers' cycles
    while True:
        picks = within(choices, limit)
        if picks is None and steps:  # the stage whose smallest choice is the biggest:
            # its folds at an earlier step too
            offer(max(steps, key=lambda i: min(c[1] for c in choices[i])))
            continue
        if picks is None:
            need = sum(min(o[1] for o in opts) for opts in options)
            folded = sum(min(o[1] for o in opts) for opts in choices)
            raise PimError(f"{file}: its {len(stages)} stages need at least {need} crossbars "
                           f"(folded where they can be: {folded}), the architecture has "
                           f"{limit}")
        todo = {(i, p[2]): [inputs(i, *bands[(i, p[2])], f)
                            for f in range(bands[(i, p[2])][1].parts)]
                for i, p in enumerate(picks) if p[2] < 0 and (i, p[2]) not in counted}
        if not todo:
            break
        prefetch([p for passes in todo.values() for ps in passes for p in ps], arch)
        for (i, tag), passes in todo.items():
            counted[(i, tag)] = sum(move_cycles(*p, arch) for ps in passes for p in ps)
            choices[i] = [_guess(c, i, bands, counted) for c in choices[i]]
    out, folds = [], []
    for i, (f, p) in enumerate(zip(found, picks, strict=True)):
        if p[2] < 0:
            band, fold = bands[(i, p[2])]
            out.append(((p[0], p[1]), *band[1:]))
            folds.append(fold)
        else:
            out.append(f if int(dict(f[1].meta).get("chunks", 0)) == p[2] or p[2] == 0
                       else build(i, p[2]))
            folds.append(None)
    return out, folds


def _guess(c: Option, i: int, bands: dict[tuple[int, int], tuple[Split, Fold]],
           counted: dict[tuple[int, int], int]) -> Option:
    """Option c of stage i, its cost counted, or if it is a fold not counted yet, guessed
    from the fold into fewer passes along its axis whose gathers are counted, if any
    (more passes gather at least as much)."""
    if c[2] >= 0:
        return c
    band, fold = bands[(i, c[2])]
    if (i, c[2]) in counted:
        return (fold.parts * band[0][0] + counted[(i, c[2])], *c[1:])
    like = [m for key, m in counted.items() if key[0] == i
            and (f := bands[key][1]).axis == fold.axis and f.lead == fold.lead
            and f.parts < fold.parts]
    return (max(c[0], fold.parts * band[0][0] + max(like, default=0)), *c[1:])


def _bands(st: Stage, i: int, split: Split, build: Build, least: int
           ) -> Iterator[list[tuple[Split, Fold]]]:
    """The stage's folds into `least` passes or more, each built for its first band, at
    `split`'s chunks or more (the first that builds), a step of its result view at a
    time, the latest first. A fold cuts an axis of the result, as the view orders it at
    that step, along which the channels do not vary (so that the weights stay: checked
    on the built band too). The later the step, the more of the view's layout a band
    keeps, so the fewer and longer its gathers' runs (and its readers'): AlexNet's conv2
    in 8 passes cut at its view's last step gathers in 1.6M cycles, in 26 cut at the
    first (a row a pass) in 70.3M. So an earlier step offers only more passes than the
    later ones did (smaller bands); and of the pass counts whose bands are as wide, the
    fewest alone (more would only pad)."""
    (r,) = st.kernel.results
    rv, shape = st.result_view, tuple(r.shape)
    if (not rv and result_space(st.kernel) != shape) or len(shape) < 2:
        return
    first = int(dict(split[1].meta).get("chunks", 1))
    widest = max(split_lanes(st.kernel, n) for n in st.kernel.graph)
    chunks = [first << k for k in range(widest.bit_length() + 1)
              if first << k <= max(first, 2 * widest)]
    channel = np.broadcast_to(np.arange(1, shape[1] + 1).reshape(
        1, -1, *[1] * (len(shape) - 2)), shape)
    most = 1
    for k in range(len(rv), -1, -1):
        ids = apply_view(channel, rv[:k])
        step: list[tuple[Split, Fold]] = []
        for axis, n in enumerate(ids.shape):
            widths = set()
            same = bool(np.all(ids == ids.take([0], axis)))  # the same channels all along
            for p in range(max(2, least, most + 1), n + 1):
                width = -(-n // p)
                if width in widths or width * p - n > n // WASTE or width * (p - 1) >= n \
                        or not (same or _alike(ids, axis, p)):
                    continue
                widths.add(width)
                fold = Fold(ids.shape, axis, p, rv[:k])
                try:
                    made = next((b for c in chunks if (b := _band(st, i, fold, c, build))),
                                None)
                except ValueError:  # its weights vary along the axis
                    continue
                if made is not None:
                    step.append((made, fold))
        if step:
            most = max(f.parts for _, f in step)
            yield step


def _alike(ids: np.ndarray, axis: int, parts: int) -> bool:
    """Whether every band of `ids` along `axis` holds what the first does, where it
    holds anything (0: padding, also where the last band runs past the axis), and
    holds something (a band of padding alone would be a pass that computes nothing)."""
    along = np.moveaxis(ids, axis, 0)
    width = -(-len(along) // parts)
    along = np.concatenate([along, np.zeros((width * parts - len(along), *along.shape[1:]),
                                            dtype=along.dtype)])
    bands = along.reshape(parts, -1)
    return bool(np.all((bands == bands[0]) | (bands == 0)) and np.all(bands.any(axis=1)))


def _band(st: Stage, i: int, fold: Fold, chunks: int, build: Build) -> Split | None:
    """The stage's program for one band of `fold`, if it builds; ValueError if its
    weights do not stay."""
    try:
        band = build(i, chunks, fold.band())
    except PimError:
        return None
    prog = band[1]
    for t in prog.inputs:
        if t.name in st.residents:
            fold.passed(t, 0)
        elif not fold.stationary(t):
            raise ValueError(t.name)
    for o in prog.outputs:
        fold.unfolded(o, fold.store(o, prog.crossbars, prog.arch.cols))
    return band
