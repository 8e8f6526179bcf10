"""Linking stage programs into one: each stage in crossbars of its own (FloatPIM keeps a
layer's weights in its own blocks, so the host writes every stage's weights before the
program starts), its resident inputs built by moves from the stage that computed them,
the routines (synthesised once per process) shared."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from pimc.isa.arch import Arch
from pimc.isa.builder import ProgramBuilder
from pimc.isa.errors import PimError
from pimc.isa.uop import Call, Item, Loop, Program, Span, TensorIO, Transfer
from pimc.lower.fold import Fold, Store
from pimc.lower.move_ops import emit_moves, first_free, prefetch, relocated, shifted


@dataclass(frozen=True)
class StageProgram:
    program: Program
    residents: tuple[str, ...]  # inputs built by moves, not written by the host
    label: str  # what its moves are annotated with
    fold: Fold | None = None  # its program computes one band, run once a pass
    stored: int = 0  # the crossbars of a fold's store, after its program's

    @property
    def crossbars(self) -> int:
        return self.program.crossbars + self.stored


def relocate(item: Item, by: int) -> Item:
    """The same op acting `by` crossbars further on."""
    if isinstance(item, Loop):
        return dataclasses.replace(item, body=tuple(relocate(i, by) for i in item.body))
    if isinstance(item, Call):
        return dataclasses.replace(item, xbs=shifted(item.xbs, by) if item.xbs else None)
    if isinstance(item, Transfer):
        return dataclasses.replace(item, xbs=shifted(item.xbs, by),
                                   dst_xbs=shifted(item.dst_xbs, by))
    return dataclasses.replace(item, xbs=shifted(item.xbs, by))


def placed_bases(sizes: list[int], order: list[int] | None = None) -> list[int]:
    """Each stage's first crossbar, the stages side by side in `order` (default: as
    they run)."""
    bases, at = [0] * len(sizes), 0
    for j in order if order is not None else range(len(sizes)):
        bases[j], at = at, at + sizes[j]
    return bases


def link(stages: list[StageProgram], arch: Arch, file: str,
         meta: tuple[tuple[str, str], ...], results: tuple[str, ...] = (),
         state: dict[str, str] | None = None,
         sources: dict[tuple[int, int], str] | None = None,
         order: list[int] | None = None) -> Program:
    """One program: the stages one after another in consecutive crossbar ranges; the
    host reads the `results` (by default the last stage's outputs) where their stages
    left them. `state` (result -> input, a training step's new weights): at the end,
    each such result is moved into every placement of its input, so that the program
    run again (the next step) reads it there; the host writes the input once. `sources`
    names, by (stage, input) index, another stage's output to move into that placement
    instead (the same values, computed in its order: pimc.lower.mirror). `order`: the
    stages as they sit in the crossbars, if not as they run (a TRANSFER costs its
    distance, so stages that trade values sit close)."""
    total = sum(s.crossbars for s in stages)
    if total > arch.max_crossbars:
        sizes = ", ".join(str(s.crossbars) for s in stages)
        raise PimError(f"{file}: the stages need {total} crossbars ({sizes}), the "
                       f"architecture has {arch.max_crossbars}")
    b = ProgramBuilder(total, arch=arch, source=file, meta=meta)
    routines = {}
    bases = placed_bases([s.crossbars for s in stages], order)
    made: dict[str, TensorIO] = {}  # resident name -> where its stage left it
    folded: dict[str, Store] = {}  # a folded stage's resident -> its store
    moves: list[list[list[tuple[TensorIO, TensorIO, int]]]] = []  # each stage's
    # relayouts, a list a pass
    kept: list[tuple[TensorIO, int, str]] = []  # placements a result replaces, and from what
    targets = set((state or {}).values())
    for j, s in enumerate(stages):
        ins = tuple(relocated(t, bases[j]) for t in s.program.inputs)
        outs = tuple(relocated(t, bases[j]) for t in s.program.outputs)
        staging = first_free(ins + outs)
        mine = [t for t in ins if t.name in s.residents]
        moves.append([[(made[t.name], s.fold.passed(t, f) if s.fold else t, staging)
                       for t in mine] for f in range(s.fold.parts if s.fold else 1)])
        for k, t in enumerate(ins):
            if t.name not in s.residents:
                b.inputs.append(t)
                if t.name in targets:
                    kept.append((t, staging, (sources or {}).get((j, k), "")))
        made.update((t.name, t) for t in outs)
        if s.fold:
            for t in outs:
                folded[t.name] = s.fold.store(t, bases[j] + s.program.crossbars, arch.cols)
                made[t.name] = s.fold.unfolded(t, folded[t.name])
    back = [(name, (made[source or result], t, staging)) for result, name in
            (state or {}).items() for t, staging, source in kept if t.name == name]
    prefetch([m for ms in moves for pass_ in ms for m in pass_] + [m for _, m in back], arch)
    starts = []
    for j, s in enumerate(stages):
        starts.append(len(b.ops))
        ops = [relocate(i, bases[j]) for i in s.program.ops]
        outs = tuple(relocated(t, bases[j]) for t in s.program.outputs)
        for f, pass_ in enumerate(moves[j]):
            b.source_note = s.label
            for src, dst, staging in pass_:
                emit_moves(b, src, dst, staging, arch, folded.get(src.name))
            b.source_note = ""
            b.ops += ops
            for t in outs if s.fold else ():  # the band's result into its pass's word
                xbs, cols = folded[t.name].at(f)
                b.transfer(Span(t.xbs.start, t.xbs.start + len(xbs)), xbs,
                           t.columns(folded[t.name].bits), cols, rows=t.rows)
        for r in s.program.routines:
            routines[r.name] = r
    for name, (src, dst, staging) in back:
        b.source_note = f"update/{name} write-back"
        emit_moves(b, src, dst, staging, arch, folded.get(src.name))
    b.source_note = ""
    outs = tuple(relocated(t, bases[-1]) for t in stages[-1].program.outputs)
    b.outputs = [made[r] for r in results] if results else list(outs)
    b.meta += (("stage-starts", " ".join(map(str, starts))),)  # the pipeline's stages
    routines.update((r.name, r) for r in b.routines)  # the moves' own (shifts in hops)
    b.routines = sorted(routines.values(), key=lambda r: r.name)
    return b.build()
