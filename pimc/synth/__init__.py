"""NOR synthesis: arithmetic as NOR netlists, then cells, INITs and micro-ops.

netlist.py builds a gate-level SSA netlist with local simplification; logic.py, fixed.py
and floating.py write arithmetic over it; alloc.py assigns crossbar columns with reuse;
emit.py schedules the INITs and appends micro-ops to a ProgramBuilder.
"""
