"""Fitting a network's stages into the memory: each stage's split chosen together within
the crossbars the architecture has (the slowest stage as fast as can be), and where even
the fewest crossbars do not fit, the biggest stages folded (pimc.lower.fold)."""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Callable

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
ROUNDS = 4  # tries to fold a network into its memory
PARTS = 6  # pass counts tried a stage
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

    def inputs(i: int, split: Split) -> list[tuple[TensorIO, TensorIO, int]]:
        free = first_free(split[1].inputs + split[1].outputs)
        return [(made[t.name], relocated(t, bases[i]), free) for t in split[1].inputs
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
            return _fold(stages, found, options, file, arch, build, foldable)
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


def _fold(stages: list[Stage], found: list[Split], options: list[list[Option]], file: str,
          arch: Arch, build: Build, foldable: Callable[[int], bool]
          ) -> tuple[list[Split], list[Fold | None]]:
    """The stages at their fewest crossbars, the biggest folded until they fit: a cap on
    any stage's crossbars is found that the stages, each cut to it, fit under; each stage
    above it is folded into the fewest passes that bring it under (FloatPIM computes a
    layer's outputs in turn when its blocks cannot hold them all at once)."""
    limit = arch.max_crossbars
    fewest = [min(o, key=lambda c: (c[1], c[0])) for o in options]
    splits = [f if f[1].crossbars == o[1] else build(i, o[2])
              for i, (f, o) in enumerate(zip(found, fewest, strict=True))]
    folds: list[Fold | None] = [None] * len(stages)
    out = list(splits)
    can = [foldable(i) and fewest[i][2] > 0 for i in range(len(stages))]  # (0: a row tree)
    bad: set[Fold] = set()  # folds whose weights vary
    for _ in range(ROUNDS):
        if sum(s[1].crossbars for s in out) <= limit:
            return out, folds
        fixed = sum(s[1].crossbars for s, c in zip(out, can, strict=True) if not c)
        cap = _cap([s[1].crossbars for s, c in zip(splits, can, strict=True) if c],
                   limit - fixed)
        if cap < 1:
            break
        for i, s in enumerate(splits):
            if can[i] and out[i][1].crossbars > cap:
                made = _folded(stages[i], i, s, cap, arch, build, bad)
                if made is None:  # as it is: the others share what is left
                    can[i] = False
                else:
                    out[i], folds[i] = made
    need = sum(min(o[1] for o in opts) for opts in options)
    raise PimError(f"{file}: its {len(stages)} stages need at least {need} crossbars "
                   f"(folded where they can be: {sum(s[1].crossbars for s in out)}), "
                   f"the architecture has {limit}")


def _cap(sizes: list[int], room: int) -> int:
    """The largest c with sum(min(size, c)) <= room (0 if none)."""
    lo, hi = 0, max(sizes, default=0)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if sum(min(s, mid) for s in sizes) <= room else (lo, mid - 1)
    return lo


def _folded(st: Stage, i: int, split: Split, cap: int, arch: Arch, build: Build,
            bad: set[Fold]) -> tuple[Split, Fold] | None:
    """The stage folded into the fewest passes that take at most `cap` crossbars
    (with the store), at `split`'s chunks or more; None if no fold does. The fold cuts
    an axis of the result, as the stage's result view orders it at some step, along
    which the channels do not vary (so that the weights stay: checked on the built
    band too). The later the step, the more of the view's layout the band keeps (its
    readers' moves stay whole blocks, and its own gathers too: cut at an earlier step,
    AlexNet's conv2 in 13 passes moved 60 times the cycles of its unfolded gather), so
    the latest steps are tried first."""
    (r,) = st.kernel.results
    rv, shape = st.result_view, tuple(r.shape)
    if (not rv and result_space(st.kernel) != shape) or len(shape) < 2:
        return None
    first = int(dict(split[1].meta).get("chunks", 1))
    widest = max(split_lanes(st.kernel, n) for n in st.kernel.graph)
    chunks = [first << k for k in range(widest.bit_length() + 1)
              if first << k <= max(first, 2 * widest)]
    least = math.ceil(split[1].crossbars / cap)
    channel = np.broadcast_to(np.arange(1, shape[1] + 1).reshape(
        1, -1, *[1] * (len(shape) - 2)), shape)
    folds = []
    for k in range(len(rv), -1, -1):
        ids = apply_view(channel, rv[:k])
        for axis, n in enumerate(ids.shape):
            folds += [Fold(ids.shape, axis, p, rv[:k]) for p in range(max(2, least), n + 1)
                      if -(-n // p) * p - n <= n // WASTE and _alike(ids, axis, p)]
    tries = 0
    for lead in sorted({len(f.lead) for f in folds}, reverse=True):
        for parts in sorted({f.parts for f in folds if len(f.lead) == lead}):
            tries += 1
            made = next(((b, f) for f in folds if f.parts == parts and len(f.lead) == lead
                         and f not in bad
                         for c in chunks if (b := _band(st, i, f, c, build, bad))), None)
            if made is None:
                continue
            band, fold = made
            size = band[1].crossbars + fold.stored(band[1].outputs, arch.cols)
            if size <= cap:
                return ((parts * band[0][0], size), *band[1:]), fold
            if tries >= PARTS:
                return None
    return None


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


def _band(st: Stage, i: int, fold: Fold, chunks: int, build: Build,
          bad: set[Fold]) -> Split | None:
    """The stage's program for one band of `fold`, if it builds and its weights stay
    (else the fold is marked `bad`)."""
    try:
        band = build(i, chunks, fold.band())
    except PimError:
        return None
    prog = band[1]
    try:
        for t in prog.inputs:
            if t.name in st.residents:
                fold.passed(t, 0)
            elif not fold.stationary(t):
                raise ValueError(t.name)
        for o in prog.outputs:
            fold.unfolded(o, fold.store(o, prog.crossbars, prog.arch.cols))
    except ValueError:
        bad.add(fold)
        return None
    return band
