"""Architecture parameters: FloatPIM's defaults, TOML files, and clear errors."""

from __future__ import annotations

import pytest

from pimc.isa.arch import FLOATPIM, Arch, InitModel
from pimc.isa.errors import PimError


def test_defaults_are_floatpims():
    a = FLOATPIM
    assert (a.rows, a.cols, a.max_crossbars) == (1024, 1024, 32 * 256)
    assert (a.t_nor_ns, a.t_search_ns) == (1.1, 1.5)
    assert (a.e_nor_fj, a.e_set_fj, a.e_reset_fj, a.e_search_fj) == (0.29, 23.8, 0.32, 5340.0)
    assert a.partitions == 1 and a.init_model is InitModel.BULK


def test_toml_overrides_fields(tmp_path):
    path = tmp_path / "pypim.toml"
    path.write_text('[arch]\npartitions = 32\ninit_model = "per-cell"\nt_nor_ns = 2\n')
    a = Arch.from_toml(path)
    assert a.partitions == 32 and a.partition_width == 32
    assert a.init_model is InitModel.PER_CELL and a.t_nor_ns == 2.0
    assert Arch.from_fields(a.fields()) == a


@pytest.mark.parametrize(("text", "message"), [
    ("speed = 1", "unknown architecture parameter 'speed'"),
    ("rows = 1.5", "bad value 1.5 for 'rows'"),
    ('init_model = "free"', "bad value 'free' for 'init_model'"),
    ("partitions = 3", "partitions (3) must divide cols (1024)"),
    ("rows = [", "cannot read architecture file"),
])
def test_bad_toml(tmp_path, text, message):
    path = tmp_path / "a.toml"
    path.write_text(text)
    with pytest.raises(PimError) as err:
        Arch.from_toml(path)
    assert str(err.value).startswith(str(path)) and message in str(err.value)
